from dataclasses import dataclass

import numpy as np

from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register


@register("mopps")
@dataclass
class MoPPS(Strategy):
    """MoPPS, Model Predictive Prompt Selection ("Can Prompt Difficulty be Online Predicted for
    Accelerating RL Finetuning of Reasoning Models?", Qu et al., arXiv 2507.04632).

    Rule: every prompt's pass rate has a Beta(alpha, beta) posterior; each step draws
    pool_factor x B candidates, Thompson-samples a pass rate for each and rolls out n for the B
    whose sample is nearest ``target``; all B groups are trained on. No pilot rollouts. A
    rolled-out prompt's posterior becomes alpha <- lambda alpha + (1 - lambda) alpha_0 +
    successes, beta <- lambda beta + (1 - lambda) beta_0 + failures.

    Paper symbols: B-hat / B = pool_factor; gamma* = target; lambda = discount; alpha_0, beta_0
    = prior_alpha, prior_beta.

    Simplified: the default lambda (0.5) is ours, not checked against the paper's runs; the
    prior is the same flat Beta(alpha_0, beta_0) for every prompt (the authors' code can also
    initialise it from an offline pass-rate estimate); candidates not selected are consumed
    from the data loader like rejected DAPO prompts.
    """

    pool_factor: int = hyper(
        4, "candidates Thompson-sampled per step, as a multiple of the train batch (B-hat / B)",
        low=1, search=(1, 8))
    target: float = hyper(
        0.5, "pass rate the selection aims at (gamma*)", low=0.0, high=1.0, search=(0.2, 0.8))
    discount: float = hyper(
        0.5, "posterior weight kept at each update; the rest returns to the prior (lambda)",
        low=0.0, high=1.0, search=(0.0, 1.0))
    prior_alpha: float = hyper(1.0, "Beta prior pseudo-successes (alpha_0)",
                               low=0.0, open_low=True, search=(0.25, 4.0), log=True)
    prior_beta: float = hyper(1.0, "Beta prior pseudo-failures (beta_0)",
                              low=0.0, open_low=True, search=(0.25, 4.0), log=True)

    def collect(self, ctx: StepContext) -> list[Outcome]:
        posterior: dict[int, tuple[float, float]] = ctx.memory.setdefault("posterior", {})
        pool = ctx.candidates.take(self.pool_factor * ctx.train_batch)
        alpha, beta = self.posterior(posterior, pool)

        sampled = ctx.rng.beta(alpha, beta)
        chosen = np.argsort(np.abs(sampled - self.target), kind="stable")[: ctx.train_batch]
        outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in pool[chosen]})
        groups = [outcomes[int(i)] for i in pool[chosen]]

        successes = np.array([g.rewards.sum() for g in groups])
        failures = np.array([g.n for g in groups]) - successes
        lam = self.discount
        alpha = lam * alpha[chosen] + (1 - lam) * self.prior_alpha + successes
        beta = lam * beta[chosen] + (1 - lam) * self.prior_beta + failures
        posterior.update(zip(pool[chosen].tolist(), zip(alpha.tolist(), beta.tolist())))
        return groups

    def posterior(self, posterior: dict, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) of each prompt; the prior for prompts never rolled out."""
        prior = (self.prior_alpha, self.prior_beta)
        alpha, beta = np.array([posterior.get(int(i), prior) for i in prompts], dtype=float).T
        return alpha, beta
