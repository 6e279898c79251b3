from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome, group_means
from allocbench.strategy import StepContext, Strategy, hyper, register


@register("hora")
@dataclass
class HORA(Strategy):
    """HORA, hit-utility optimal rollout allocation (Wang, Li, Sun, Ding, Dobriban, "Where to
    Spend Rollouts: Hit-Utility Optimal Rollout Allocation for Group-Based RLVR", arXiv
    2605.07114). Learning-free: no predictor, no tuned prior.

    Hit utility (the abstract's definition): the posterior probability that at least one of m
    additional rollouts of a prompt is correct, under a uniform prior on its success rate p:
    with s correct and f wrong rollouts observed, p ~ Beta(1 + s, 1 + f) and
        H(m) = 1 - E[(1 - p)^m] = 1 - prod_{j<m} (1 + f + j) / (2 + s + f + j).
    HORA chooses the additional rollouts m_i of the step's prompts that maximise sum_i H_i(m_i)
    for the batch's budget.

    Rule, as run here: take the next B prompts; round 1 gives each ``base_n`` rollouts (its
    base group: what the posterior is conditioned on); round 2 splits the rest of the step's
    B x n rollouts (grpo's budget, so compute-matched) by maximal total hit utility, a prompt's
    group holding at most ``max_n``. Group = base + additional rollouts; all B groups are
    trained on with the unchanged group advantage. Two generation rounds per step; no pilot
    rollouts (no base group is screened out).

    Solver: the marginal value of the (m+1)-th additional rollout, E[p (1 - p)^m] = a/(a+b)
    prod_{j<m} (b + j) / (a + b + 1 + j) for Beta(a, b), falls strictly in m, so the objective
    is separable concave and taking the budget's largest marginals over all (prompt, m) pairs
    at once is exact (one numpy argpartition over a B x (max_n - base_n) table, in logs).
    What it does: a prompt whose base group is all correct gets about one more rollout (a hit is
    near-certain after one), an all-wrong one gets the most (its hit chance keeps rising).

    Paper symbols: p_i (success rate) with the uniform Beta(1, 1) prior; the batch budget = B x n
    of the run; the per-prompt allocation m_i = the additional rollouts. Our reading, since only
    the abstract and contents of the paper could be read here (Section 3's equations and
    Appendix C's settings could not): that the posterior is conditioned on rollouts already
    drawn for the prompt in this step ("additional allocation", "sampled groups already
    saturated"), the base / additional split (``base_fraction``, 1/2 by default), and the cap
    ``max_n`` (4 x n, as knapsack and vip) are ours. ``history`` is our extension, off by
    default: it also adds the prompt's last group (an earlier epoch) to the evidence; with
    ``base_fraction`` 0 it gives the one-round reading (posterior from history only, a prompt
    never seen has the uniform prior, so the first epoch is grpo; a prompt whose allocation is
    0 is left out of the batch). Rewards are read as 0/1 (successes = summed rewards).
    """

    base_fraction: float = hyper(
        0.5, "share of n every prompt gets in round 1 (its base group); 0 = one round, needs history",
        low=0.0, high=1.0, open_high=True, search=(0.125, 0.75))
    max_n: int | None = hyper(
        None, "most rollouts a prompt's group holds (base + additional); default 4 x n; >= n",
        low=1)
    history: bool = hyper(
        False, "also condition on the prompt's last group (not in the paper: uniform prior only)",
        search=(False, True))

    def derive(self, train_batch: int, group_size: int) -> dict:
        base_n = round(self.base_fraction * group_size)
        max_n = self.max_n or 4 * group_size
        if base_n == 0 and not self.history:
            raise ConfigError(f"hora: base_fraction={self.base_fraction} gives no base group at "
                              f"n = {group_size}, and without history the posterior has no evidence")
        if max_n < group_size:
            raise ConfigError(f"hora.max_n ({max_n}) must be at least n = {group_size} to spend B x n")
        return {"max_n": max_n, "base_n": base_n}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        last: dict[int, tuple[float, float]] = ctx.memory.setdefault("last", {})  # id -> (s, f)
        prompts = ctx.candidates.take(ctx.train_batch).tolist()

        # round 1: the base group of every prompt, the evidence the posterior is conditioned on
        groups = ctx.sampler.sample({i: self.base_n for i in prompts}) if self.base_n else {}
        successes, failures = self.evidence(prompts, groups, last)

        # round 2: the rest of the budget, to the largest posterior hit-utility gains
        budget = ctx.train_batch * ctx.group_size - self.base_n * len(prompts)
        extra = allocate(1 + successes, 1 + failures, budget, self.max_n - self.base_n)
        asked = {i: int(k) for i, k in zip(prompts, extra) if k > 0}
        if asked:
            for i, more in ctx.sampler.sample(asked).items():
                groups[i] = groups[i].merge(more) if i in groups else more

        batch = [groups[i] for i in prompts if i in groups]
        if self.history:
            sizes, means = group_means(batch)
            wins = sizes * means
            last.update(zip((g.prompt_id for g in batch), zip(wins.tolist(), (sizes - wins).tolist())))
        return batch

    def evidence(self, prompts: list[int], groups: dict, last: dict) -> tuple[np.ndarray, np.ndarray]:
        """Correct and wrong rollouts per prompt: its base group, plus its last group with history."""
        successes, failures = np.zeros(len(prompts)), np.zeros(len(prompts))
        if groups:
            sizes, means = group_means([groups[i] for i in prompts])
            successes, failures = sizes * means, sizes * (1 - means)
        if self.history:
            s, f = np.array([last.get(i, (0.0, 0.0)) for i in prompts], dtype=float).reshape(-1, 2).T
            successes, failures = successes + s, failures + f
        return successes, failures


def hit_utility(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> np.ndarray:
    """H(m) = 1 - E[(1 - p)^m] for p ~ Beta(a, b): the chance that m more rollouts hit."""
    a, b, m = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (a, b, m)))
    j = np.arange(int(m.max()) if m.size else 0)
    factors = np.where(j < m[..., None], (b[..., None] + j) / (a[..., None] + b[..., None] + j), 1.0)
    return 1.0 - factors.prod(axis=-1)


def allocate(a: np.ndarray, b: np.ndarray, budget: int, cap: int) -> np.ndarray:
    """Additional rollouts per prompt, each in [0, cap], summing to ``budget`` (or to every slot
    when the caps hold less), that maximise sum_i H_i(m_i) for posteriors Beta(a_i, b_i).

    Greedy is exact: log marginal of the (m+1)-th rollout = log a/(a+b) + sum_{j<m} log (b+j) /
    (a+b+1+j), strictly falling in m, so the ``budget`` largest entries of the table take a
    prefix of every row; np.bincount of their rows is the allocation.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    budget = min(int(budget), cap * len(a))
    if budget <= 0:
        return np.zeros(len(a), dtype=np.int64)
    j = np.arange(cap - 1)[None, :]
    steps = np.log(b[:, None] + j) - np.log(a[:, None] + b[:, None] + 1 + j)
    log_gain = np.log(a / (a + b))[:, None] + np.concatenate(
        [np.zeros((len(a), 1)), np.cumsum(steps, axis=1)], axis=1)
    top = np.argpartition(-log_gain.ravel(), budget - 1)[:budget]
    return np.bincount(top // cap, minlength=len(a))
