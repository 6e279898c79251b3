from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register

GAINS = {
    "p(1-p)^2": lambda p: p * (1 - p) ** 2,
    "p(1-p)": lambda p: p * (1 - p),
    "1": lambda p: np.ones_like(p),
}


@register("knapsack")
@dataclass
class Knapsack(Strategy):
    """Knapsack RL ("Knapsack RL: Unlocking Exploration of LLMs via Optimizing Budget
    Allocation", Li et al., arXiv 2509.25849).

    Rule: the step's B prompts share the GRPO budget of B x n rollouts; prompt i gets N_i in
    [min_n, max_n] maximising sum_i (1 - p_i^N_i - (1 - p_i)^N_i) x gain(p_i), the chance of a
    non-zero gradient times a learning gain, with p_i estimated from the prompt's last group
    (earlier epochs). One generation round per step; every group is trained on.

    Solver: the value's marginal gain of one more rollout, gain(p) (p^N (1-p) + (1-p)^N p),
    falls with N, so the separable knapsack with unit costs is solved exactly by greedy
    marginal allocation: after min_n each, the (B x n - B x min_n) largest marginal gains over
    all (prompt, N) pairs are taken at once (numpy argpartition, no loop).

    Paper symbols: N_low, N_up = min_n, max_n; the total budget = B x n of the run; InfoGain(p)
    = gain ("p(1-p)^2" is our reading of the paper; "p(1-p)" and "1" are variants).

    Simplified: p_i is the last observed pass rate shrunk toward prior_p by prior_strength
    pseudo-rollouts (a prompt never rolled out gets prior_p), which also stands in for the
    paper's fallback handling of prompts with no success yet; rollout cost is one unit per
    rollout (not tokens); rollouts whose marginal value is exactly 0 (p-hat 0 or 1, possible
    only at prior_strength 0) are left unspent rather than spread.
    """

    min_n: int = hyper(2, "fewest rollouts a prompt gets (N_low)", low=1, search=(1, 8))
    max_n: int | None = hyper(
        None, "most rollouts a prompt gets (N_up); default 4 x n", low=1, search=(16, 128),
        log=True)
    gain: str = hyper(
        "p(1-p)^2", "learning-gain factor of a prompt's value", choices=tuple(GAINS),
        search=tuple(GAINS))
    prior_p: float = hyper(
        0.5, "pass rate assumed for a prompt never rolled out", low=0.0, high=1.0,
        open_low=True, open_high=True, search=(0.1, 0.9))
    prior_strength: float = hyper(
        1.0, "pseudo-rollouts at prior_p mixed into a prompt's last observed pass rate",
        low=0.0, search=(0.25, 8.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_n is not None and self.max_n < self.min_n:
            raise ConfigError(f"knapsack.max_n ({self.max_n}) must be at least min_n ({self.min_n})")

    def derive(self, train_batch: int, group_size: int) -> dict:
        if self.min_n > group_size:
            raise ConfigError(f"knapsack.min_n ({self.min_n}) exceeds the budget of "
                              f"n = {group_size} rollouts per prompt")
        return {"max_n": self.max_n or max(4 * group_size, self.min_n)}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        budget = ctx.train_batch * ctx.group_size
        # prompt id -> (successes, rollouts) of its last group
        last: dict[int, tuple[float, int]] = ctx.memory.setdefault("last", {})
        prompts = ctx.candidates.take(ctx.train_batch)
        counts = self.allocate(self.pass_rates(last, prompts), budget, self.max_n)
        outcomes = ctx.sampler.sample({int(i): int(k) for i, k in zip(prompts, counts)})
        groups = [outcomes[int(i)] for i in prompts]
        last.update((g.prompt_id, (float(g.rewards.sum()), g.n)) for g in groups)
        return groups

    def pass_rates(self, last: dict, prompts: np.ndarray) -> np.ndarray:
        successes, rollouts = np.array([last.get(int(i), (0.0, 0)) for i in prompts], dtype=float).T
        with np.errstate(invalid="ignore"):  # 0/0 for an unseen prompt at prior_strength 0
            p = (successes + self.prior_strength * self.prior_p) / (rollouts + self.prior_strength)
        return np.where(rollouts > 0, p, self.prior_p)

    def allocate(self, p: np.ndarray, budget: int, max_n: int) -> np.ndarray:
        """Rollouts per prompt: min_n each, then the largest marginal gains up to the budget."""
        counts = np.full(len(p), self.min_n)
        extra = min(budget - counts.sum(), (max_n - self.min_n) * len(p))
        if extra <= 0:
            return counts
        N = np.arange(self.min_n, max_n)[None, :]  # marginal of the (N+1)-th rollout
        q = (1 - p)[:, None]
        marginal = GAINS[self.gain](p)[:, None] * (p[:, None] ** N * q + q**N * p[:, None])
        extra = min(extra, int((marginal > 0).sum()))  # a rollout worth nothing is not spent
        if extra == 0:
            return counts
        top = np.argpartition(-marginal.ravel(), extra - 1)[:extra]
        return counts + np.bincount(top // marginal.shape[1], minlength=len(p))
