import math
from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import EarlyStop, Outcome, importance_means
from allocbench.strategy import StepContext, Strategy, hyper, register

NEVER = 2**62  # an abort point no rollout reaches


@register("duet")
@dataclass
class DUET(Strategy):
    """DUET, dual-controlled token allocation (Hu, Zhao, Xu, Jacoby, "DUET: Optimize
    Token-Budget Allocation for Reinforcement Learning with Verifiable Rewards", arXiv
    2605.08441). A layer over GRPO with two controls: a pre-rollout surrogate of each prompt's
    informativeness sets how many rollouts it gets, and a marker-gated abort rule with
    importance reweighting sets when each rollout stops.

    Rule, as run here: take the next B prompts (as grpo). Surrogate: prompt i's pass rate has
    the posterior Beta(a_i, b_i), a_i = kappa pbar + s_i, b_i = kappa (1 - pbar) + f_i, where
    (s_i, f_i) are its correct and wrong rollouts seen in earlier steps (each older group's
    evidence multiplied by ``decay`` when a new one arrives), pbar the last step's pass rate
    and kappa ``prior_strength``; its informativeness is the expected reward variance
    E[p (1 - p)] = a b / ((a + b)(a + b + 1)). No rollout is spent to measure it. Allocation:
    the step's B x n rollouts (grpo's count) split in proportion to informativeness, each
    prompt's group between ``min_n`` and ``max_n`` (a prompt given 0 is left out). One
    generation round with early stopping (``EarlyStop``): a rollout with no answer marker
    after H tokens is aborted there (cost: H tokens, weight 0, not trained on) unless a draw
    below ``keep_prob`` lets it run to its end with importance weight 1 / keep_prob; a rollout
    whose answer has closed stops ``answer_tail`` tokens later. H = ``horizon_factor`` x the
    median length of the last step's rollouts + ``grace_tokens``, the median taken with the
    importance weights (aborted rollouts 0, continued ones 1 / keep_prob), an unbiased view of
    the lengths uncut generation would give, so H does not shrink under its own censoring; the
    first step (no lengths yet) aborts nothing. Every group is trained on, with importance-
    weighted group statistics (the learner's part).

    Paper symbols and what is ours: the abort keep probability (0.05 in the paper, with 0.01 -
    0.20 tried) is ``keep_prob``; the abort horizon plus grace window is H. Only the abstract
    and a summary of the abort rule (domain answer markers such as \\boxed for math; no marker
    past horizon + grace: usually aborted, sometimes continued to EOS with importance
    weighting; a marker: kept, stopped shortly after it) could be read here. The surrogate's
    form (a history posterior), the proportional allocation with its bounds, and the horizon as
    a multiple of the running median length are our readings. Its savings are tokens, not
    rollouts: compare it on tokens to target (``cum_tokens``).
    """

    min_n: int = hyper(2, "fewest rollouts a selected prompt's group gets (0: a prompt may get none)",
                       low=0, search=(0, 4))
    max_n: int | None = hyper(None, "most rollouts a prompt's group gets; default 2 x n; >= n", low=1)
    prior_strength: float = hyper(
        2.0, "pseudo-rollouts of the last step's pass rate in each prompt's surrogate posterior",
        low=0.0, open_low=True, search=(0.5, 8.0), log=True)
    decay: float = hyper(0.5, "weight an older group's evidence keeps when a newer group of the prompt "
                         "arrives", low=0.0, high=1.0, search=(0.0, 1.0))
    horizon_factor: float = hyper(
        1.5, "abort horizon as a multiple of the running median rollout length (inf: never abort)",
        low=1.0, search=(1.0, 3.0))
    grace_tokens: int = hyper(0, "tokens past the horizon before the abort check", low=0)
    keep_prob: float = hyper(0.05, "chance an unanswered rollout at the abort point runs on (weight "
                             "1 / keep_prob)", low=0.0, high=1.0, open_low=True, search=(0.01, 0.2), log=True)
    answer_tail: int = hyper(0, "tokens generated after a closed answer before the rollout stops", low=0)

    def derive(self, train_batch: int, group_size: int) -> dict:
        max_n = self.max_n or 2 * group_size
        if max_n < group_size:
            raise ConfigError(f"duet.max_n ({max_n}) must be at least n = {group_size} to spend B x n")
        if self.min_n > group_size:
            raise ConfigError(f"duet.min_n ({self.min_n}) must be at most n = {group_size}: B x min_n "
                              "would exceed the step's B x n rollouts")
        return {"max_n": max_n}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        evidence: dict[int, tuple[float, float]] = ctx.memory.setdefault("evidence", {})  # id -> (s, f)
        prompts = ctx.candidates.take(ctx.train_batch).tolist()

        # the surrogate: each prompt's expected reward variance, before any rollout
        seen = np.array([evidence.get(i, (0.0, 0.0)) for i in prompts], dtype=float).reshape(-1, 2)
        pbar, kappa = ctx.memory.get("pass_rate", 0.5), self.prior_strength
        a, b = kappa * pbar + seen[:, 0], kappa * (1 - pbar) + seen[:, 1]
        counts = proportional(a * b / ((a + b) * (a + b + 1)), ctx.train_batch * ctx.group_size,
                              self.min_n, self.max_n)

        # one round, stopped early: the abort point from the last step's weighted lengths
        stop = EarlyStop(ctx.memory.get("horizon", NEVER), self.keep_prob, self.answer_tail)
        asked = {i: int(k) for i, k in zip(prompts, counts) if k > 0}
        groups = list(ctx.sampler.sample(asked, stop=stop).values())

        mass, _, _, mean = importance_means(groups)
        for g, m, p in zip(groups, mass.tolist(), mean.tolist()):
            s, f = evidence.get(g.prompt_id, (0.0, 0.0))
            evidence[g.prompt_id] = (self.decay * s + m * p, self.decay * f + m * (1 - p))
        if mass.sum() > 0:
            ctx.memory["pass_rate"] = float(mass @ mean / mass.sum())
        ctx.memory["horizon"] = self.horizon(groups)
        return groups

    def horizon(self, groups: list[Outcome]) -> int:
        """The next abort point: ``horizon_factor`` x the weighted median length + grace."""
        if math.isinf(self.horizon_factor):
            return NEVER
        tokens = np.concatenate([g.tokens for g in groups])
        weights = np.concatenate([g.importance for g in groups])
        order = np.argsort(tokens, kind="stable")
        cum = np.cumsum(weights[order])
        if cum[-1] <= 0:
            return NEVER
        median = tokens[order][np.searchsorted(cum, cum[-1] / 2)]
        return max(1, int(math.ceil(self.horizon_factor * median))) + self.grace_tokens


def proportional(score: np.ndarray, total: int, low: int, high: int) -> np.ndarray:
    """Integer counts in [low, high] summing to ``total`` (or to len x high when that is less),
    as near proportional to ``score`` as the bounds allow: the scale lam with sum clip(lam
    score, low, high) = total, then floors topped up by the largest remainders."""
    total = min(total, high * len(score))
    score = np.maximum(np.asarray(score, dtype=float), 1e-12)
    share = np.clip(clipped_scale(score, total, low, high) * score, low, high)
    counts = np.floor(share + 1e-9).astype(np.int64)  # + 1e-9: a share a rounding below an integer is it
    short = int(total - counts.sum())
    if short > 0:  # the largest remainders, among prompts below the cap
        room = np.where(counts < high, share - counts, -1.0)
        counts[np.argsort(-room, kind="stable")[:short]] += 1
    return counts


def clipped_scale(score: np.ndarray, total: float, low: float, high: float) -> float:
    """The lam >= 0 with sum_i clip(lam score_i, low, high) = total (low x len <= total <= high x
    len, score > 0), exactly: the sum is piecewise linear in lam with breakpoints low / score_i
    and high / score_i, so it is evaluated at every breakpoint at once (sorted scores and their
    cumulative sums) and solved on the segment that crosses ``total``."""
    s = np.sort(score)
    cum = np.r_[0.0, np.cumsum(s)]
    lam = np.unique(np.r_[low / s, high / s])
    lam = lam[lam > 0]
    at_low = np.searchsorted(s, low / lam, side="left")  # scores whose share is clipped up to low
    below_high = np.searchsorted(s, high / lam, side="right")  # from here on, clipped down to high
    f = low * at_low + high * (len(s) - below_high) + lam * (cum[below_high] - cum[at_low])
    lam, f = np.r_[0.0, lam], np.r_[low * len(s), f]  # at lam = 0 every share is low
    k = int(np.searchsorted(f, total, side="left"))
    if k == 0 or f[k] == total:
        return float(lam[min(k, len(lam) - 1)])
    return float(lam[k - 1] + (total - f[k - 1]) * (lam[k] - lam[k - 1]) / (f[k] - f[k - 1]))
