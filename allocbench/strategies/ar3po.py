from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register, sample_until


@register("ar3po")
@dataclass
class AR3PO(Strategy):
    """AR3PO, adaptive rollout and response reuse (Zhang et al., "Improving Sampling Efficiency
    in RLVR through Adaptive Rollout and Response Reuse", arXiv 2509.25808).

    Rule: take B prompts; stage after stage, every still-active prompt gets ``stage_n`` more
    rollouts (one sampler call per stage) and stops once it has a correct answer or
    ``max_rollouts`` in all. A group still all wrong at the end gets one cached correct answer
    of its prompt from an earlier step (``reused=1``: it costs no rollout); the cache keeps the
    latest correct answer's length of every prompt.

    Paper symbols: the responses per stage k = ``stage_n``, the most responses per prompt
    (stages x k) = ``max_rollouts``; response reuse on/off = ``reuse``. Simplified: the cache
    holds one answer per prompt as a token length only (the sim has no text); the paper's
    exact stage schedule and its advantage/loss treatment of the reused response (an
    off-policy sample) are not modelled: the learner sees it as an ordinary reward-1 rollout.
    All-correct and uncached all-wrong groups are trained on as they are.
    """

    stage_n: int | None = hyper(None, "rollouts per active prompt per stage; default n / 4",
                                low=1, search=(1, 16), log=True)
    max_rollouts: int | None = hyper(None, "most rollouts a prompt gets in a step; default the run's n",
                                     low=1, search=(4, 64), log=True)
    reuse: bool = hyper(True, "add a cached correct answer to all-wrong groups", search=(True, False))

    def shape(self, group_size: int) -> tuple[int, int]:
        """(stage_n, max_rollouts) for a run with this n."""
        stage_n = self.stage_n or max(1, group_size // 4)
        cap = self.max_rollouts or group_size
        if stage_n > cap:
            raise ConfigError(f"ar3po.stage_n={stage_n} exceeds max_rollouts={cap}")
        return stage_n, cap

    def resolved(self, train_batch: int, group_size: int) -> dict:
        stage_n, cap = self.shape(group_size)
        return {**super().resolved(train_batch, group_size), "stage_n": stage_n, "max_rollouts": cap}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        stage_n, cap = self.shape(ctx.group_size)
        cache: dict[int, int] = ctx.memory.setdefault("cache", {})  # prompt -> tokens of a correct answer

        prompts = [int(i) for i in ctx.candidates.take(ctx.train_batch)]
        # stage after stage, until a prompt's first correct answer or its cap
        groups = sample_until(ctx, prompts, stage_n, cap, finished=lambda g: g.rewards.max() > 0.5)

        for i in prompts:
            g = groups[i]
            correct = np.flatnonzero(g.rewards > 0.5)
            if len(correct):
                cache[i] = int(g.tokens[correct[-1]])
            elif self.reuse and i in cache:
                groups[i] = g.merge(Outcome(i, np.array([1.0]), np.array([cache[i]]), reused=1))
        return [groups[i] for i in prompts]
