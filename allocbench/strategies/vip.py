from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register


@register("vip")
@dataclass
class VIP(Strategy):
    """VIP, variance-informed predictive allocation ("Adaptive Rollout Allocation for Online
    Reinforcement Learning with Verifiable Rewards", Nguyen et al., arXiv 2602.01601).

    Rule: predict each of the next B prompts' pass rate p̂ and split the step's B x n rollouts
    so as to minimise the summed gradient variance sum_i p̂_i(1-p̂_i) / (n_i - 1) (the paper's
    RLOO variance, 4 sigma^2 p(1-p) / (n-1)) subject to n_min <= n_i <= n_max; the optimum is
    n_i - 1 proportional to sqrt(p̂_i(1-p̂_i)), rounded to integers that sum exactly to B x n.
    One generation round per step; every group is trained on.

    Predictor: a Beta-posterior mean. A prompt seen before (it keeps its last group's
    accuracy and size k) gets p̂ = (k acc + m mu) / (k + m); an unseen one gets mu, the pool
    mean, an exponential moving average of the steps' mean rewards (0.5 before the first step,
    so step 1 is uniform); m = ``prior_strength``.

    Paper symbols: the budget C = B x n (the run's); the per-prompt bounds L, U = n_min, n_max;
    p_q = p̂. Simplified: the paper predicts p_q with a Gaussian process over prompt
    embeddings and recent rollouts and solves its convex program (Dr.GRPO or RLOO variance)
    numerically; here the predictor is the shrunk last accuracy above and the RLOO program is
    solved in closed form (water-filling on the multiplier, then largest-remainder rounding).
    """

    n_min: int = hyper(2, "fewest rollouts a prompt gets (L); must be <= the run's n", low=1,
                       search=(1, 4))
    n_max: int | None = hyper(None, "most rollouts a prompt gets (U); default 4 x the run's n",
                              low=1)
    prior_strength: float = hyper(
        4.0, "pseudo-rollouts of the pool-mean prior a prompt's last accuracy is shrunk toward",
        low=0.0, search=(0.5, 64.0), log=True)
    pool_momentum: float = hyper(
        0.9, "EMA momentum of the pool mean pass rate (the prior of unseen prompts)",
        low=0.0, high=1.0, open_high=True)

    def derive(self, train_batch: int, group_size: int) -> dict:
        n_max = self.n_max or 4 * group_size
        if not self.n_min <= group_size <= n_max:
            raise ConfigError(f"vip needs n_min <= n <= n_max to spend B x n; got "
                              f"n_min={self.n_min}, n={group_size}, n_max={n_max}")
        return {"n_max": n_max}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        history: dict[int, tuple[float, int]] = ctx.memory.setdefault("history", {})
        pool_mean = ctx.memory.get("pool_mean", 0.5)

        prompts = ctx.candidates.take(ctx.train_batch)
        p_hat = self.predict(prompts, history, pool_mean)
        counts = allocate(p_hat * (1 - p_hat), ctx.train_batch * ctx.group_size, self.n_min, self.n_max)
        outcomes = ctx.sampler.sample(dict(zip(prompts.tolist(), counts.tolist())))

        groups = list(outcomes.values())
        history.update((g.prompt_id, (g.mean, g.n)) for g in groups)
        step_mean = float(np.mean([g.mean for g in groups]))
        ctx.memory["pool_mean"] = (step_mean if "pool_mean" not in ctx.memory else
                                   self.pool_momentum * pool_mean + (1 - self.pool_momentum) * step_mean)
        return groups

    def predict(self, prompts: np.ndarray, history: dict, pool_mean: float) -> np.ndarray:
        """p̂ per prompt: last accuracy shrunk toward the pool mean; the pool mean if unseen."""
        acc, k = np.array([history.get(int(i), (pool_mean, 0)) for i in prompts], dtype=float).T
        m = self.prior_strength
        return np.where(k + m > 0, (k * acc + m * pool_mean) / np.maximum(k + m, 1e-12), pool_mean)


def allocate(weight: np.ndarray, budget: int, lo: int, hi: int) -> np.ndarray:
    """Integer counts in [lo, hi] summing to ``budget`` that minimise sum w_i / (n_i - 1)
    (for lo >= 2; with lo = 1 the same rule, n_i = 1 + c sqrt(w_i), is used as is).

    The continuous optimum is n_i = clip(1 + c sqrt(w_i), lo, hi) for the c that spends the
    budget (found by bisection, vectorised); the fractional parts are then handed out by
    largest remainder, so the sum is exact and every count stays in [lo, hi].
    """
    k = len(weight)
    if not k * lo <= budget <= k * hi:
        raise ConfigError(f"cannot split {budget} rollouts over {k} prompts within [{lo}, {hi}]")
    # a zero weight is floored, so such prompts get rollouts beyond lo only once all others are at hi
    s = np.sqrt(np.maximum(weight, 1e-12))

    def spend(c: float) -> np.ndarray:
        return np.clip(1.0 + c * s, lo, hi)

    low_c, high_c = 0.0, 1.0
    while spend(high_c).sum() < budget:
        high_c *= 2.0
    for _ in range(100):
        mid = 0.5 * (low_c + high_c)
        low_c, high_c = (mid, high_c) if spend(mid).sum() < budget else (low_c, mid)
    n = spend(high_c)
    counts = np.floor(n).astype(np.int64)
    short = budget - int(counts.sum())
    if short > 0:  # largest fractional part first; a count at hi has none, so stays there
        counts[np.argsort(counts - n, kind="stable")[:short]] += 1
    return counts
