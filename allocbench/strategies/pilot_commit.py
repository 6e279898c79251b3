from dataclasses import dataclass

import numpy as np

from allocbench.protocols import Outcome, group_means
from allocbench.strategy import StepContext, Strategy, guard_rounds, hyper, register


@register("pilot_commit")
@dataclass
class PilotCommit(Strategy):
    """Pilot-Commit ("Spend Your Rollouts Where It Counts", arXiv 2605.26606), as the paper's
    verl recipe (databricks/pilot-commit, recipe/pc/) runs it.

    Rule: every generation round pilots ``gen_batch_size`` fresh prompts with ``pilot_n``
    rollouts each and, in the same round, commits ``commit_n`` more rollouts to prompts whose
    earlier pilot accuracy p̂ fell in the keep band [lower, 1 - upper] and wait in a replay
    buffer; a trained group is pilot + commit rollouts. Prompts with p̂ >= ``evict_threshold``
    leave the data from the next epoch; buffer entries older than ``max_staleness`` steps are
    dropped (so no commit is staler than that) and the buffer is emptied at epoch end. ``score="variance"`` is the abstract's
    reading instead: admit every pilot with p̂(1-p̂) > 0 and commit the highest p̂(1-p̂) first.

    Paper symbols: n_explore = pilot_n, n = commit_n, diversity_threshold_lower/upper =
    lower/upper, exclude_threshold_upper = evict_threshold, buffer_max_off_steps =
    max_staleness, buffer_sampling_method = commit_order.
    """

    contour = ("pilot_fraction", "pilot_n")  # the tuning contour's pair
    pilot_fraction: float = hyper(
        0.25, "pilot_n / (pilot_n + commit_n); 32 + 96 and 16 + 48 in the paper",
        low=0.0, high=1.0, open_low=True, open_high=True, search=(0.05, 0.6))
    pilot_n: int | None = hyper(
        None, "pilot rollouts per fresh prompt; default pilot_fraction x the run's n",
        low=1, search=(2, 64), log=True)
    gen_batch_size: int | None = hyper(
        None, "fresh prompts piloted per round; default 3 x train batch", low=1)
    lower: float = hyper(
        0.125, "pilot accuracy below this: too hard, deferred to a later epoch",
        low=0.0, high=1.0, search=(0.0, 0.5))
    upper: float = hyper(
        0.25, "pilot accuracy above 1 - upper: too easy, skipped",
        low=0.0, high=1.0, search=(0.0, 0.5))
    evict_threshold: float = hyper(
        1.0, "pilot accuracy at or above this: removed from all later epochs (above 1: never)",
        low=0.0)
    max_staleness: int = hyper(
        4, "buffer entries older than this many steps are dropped", low=0, search=(0, 8))
    commit_order: str = hyper(
        "random", "which kept prompts are committed first", choices=("random", "max_variance"),
        search=("random", "max_variance"))
    score: str = hyper(
        "band", "band: the recipe's keep band; variance: rank by p̂(1-p̂)",
        choices=("band", "variance"), search=("band", "variance"))
    max_num_gen_batches: int = hyper(
        10, "generation rounds per step before giving up; 0 = unbounded", low=0)

    def derive(self, train_batch: int, group_size: int) -> dict:
        pilot_n = self.pilot_n or max(1, round(self.pilot_fraction * group_size))
        commit_n = max(1, round(pilot_n * (1 - self.pilot_fraction) / self.pilot_fraction))
        return {"pilot_n": pilot_n, "commit_n": commit_n,
                "gen_batch_size": self.gen_batch_size or 3 * train_batch}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        # prompt id -> (its pilot rollouts, step they were drawn at); insertion-ordered
        buffer: dict[int, tuple[Outcome, int]] = ctx.memory.setdefault("buffer", {})
        # The recipe flushes after a step, so it can commit max_staleness + 1 steps late;
        # flushing before the step keeps every commit within the bound.
        for i in [i for i, (_, added) in buffer.items() if ctx.step - added > self.max_staleness]:
            del buffer[i]
        batch: list[Outcome] = []
        rounds = 0
        while len(batch) < ctx.train_batch:
            guard_rounds(self.name, rounds, self.max_num_gen_batches, len(batch), ctx.train_batch)
            rounds += 1
            fresh = ctx.candidates.take(self.gen_batch_size)
            if ctx.memory.get("epoch") != ctx.candidates.epoch:
                # a new epoch began: the recipe drops the partial batch and empties the buffer
                ctx.memory["epoch"] = ctx.candidates.epoch
                buffer.clear()
                batch.clear()
            committed = self.choose_commits(buffer, ctx.train_batch - len(batch), ctx.rng)
            outcomes = ctx.sampler.sample(
                {i: self.commit_n for i in committed}, pilot={int(i): self.pilot_n for i in fresh})
            batch += [buffer.pop(i)[0].merge(outcomes[i]) for i in committed]

            pilots = [outcomes[int(i)] for i in fresh]
            accuracy = group_means(pilots)[1]
            for o in np.array(pilots, dtype=object)[self.keep(accuracy)]:
                buffer[o.prompt_id] = (o, ctx.step)
            ctx.candidates.exclude(fresh[accuracy >= self.evict_threshold])
        return batch

    def keep(self, accuracy: np.ndarray) -> np.ndarray:
        """Which pilots go to the buffer. Too hard (< lower) ones are deferred: they stay in
        the data; too easy (> 1 - upper) ones are skipped."""
        if self.score == "variance":
            return accuracy * (1 - accuracy) > 0
        return (accuracy >= self.lower) & (accuracy <= 1 - self.upper)

    def choose_commits(self, buffer: dict, k: int, rng: np.random.Generator) -> list[int]:
        ids = list(buffer)
        if len(ids) <= k:
            return ids
        if self.score == "variance" or self.commit_order == "max_variance":
            # highest pilot std first, then the most recent, as the recipe's buffer sorts
            return sorted(ids, key=lambda i: (buffer[i][0].std, buffer[i][1]), reverse=True)[:k]
        return [ids[j] for j in rng.choice(len(ids), size=k, replace=False)]
