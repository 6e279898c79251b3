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
    latest correct answer (its length and rollout id) of every prompt.

    Paper symbols: the responses per stage k = ``stage_n``, the most responses per prompt
    (stages x k) = ``max_rollouts``; response reuse on/off = ``reuse``. Simplified: the cache
    holds one answer per prompt (the sim has no text; the real learner finds it by id); the paper's
    exact stage schedule and its advantage/loss treatment of the reused response (an
    off-policy sample) are not modelled: the learner sees it as an ordinary reward-1 rollout.
    All-correct and uncached all-wrong groups are trained on as they are.
    """

    stage_n: int | None = hyper(None, "rollouts per active prompt per stage; default n / 4",
                                low=1, search=(1, 16), log=True)
    max_rollouts: int | None = hyper(None, "most rollouts a prompt gets in a step; default the run's n",
                                     low=1, search=(4, 64), log=True)
    reuse: bool = hyper(True, "add a cached correct answer to all-wrong groups", search=(True, False))

    def derive(self, train_batch: int, group_size: int) -> dict:
        stage_n = self.stage_n or max(1, group_size // 4)
        cap = self.max_rollouts or group_size
        if stage_n > cap:
            raise ConfigError(f"ar3po.stage_n={stage_n} exceeds max_rollouts={cap}")
        return {"stage_n": stage_n, "max_rollouts": cap}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        # prompt -> (tokens, rollout id) of its latest correct answer
        cache: dict[int, tuple[int, int]] = ctx.memory.setdefault("cache", {})

        prompts = [int(i) for i in ctx.candidates.take(ctx.train_batch)]
        # stage after stage, until a prompt's first correct answer or its cap
        groups = sample_until(ctx, prompts, self.stage_n, self.max_rollouts, finished=lambda g: g.rewards.max() > 0.5)

        for i in prompts:
            g = groups[i]
            correct = np.flatnonzero(g.rewards > 0.5)
            if len(correct):
                cache[i] = (int(g.tokens[correct[-1]]), int(g.rollout_ids[correct[-1]]))
            elif self.reuse and i in cache:
                tokens, rollout_id = cache[i]
                groups[i] = g.merge(Outcome(i, np.array([1.0]), np.array([tokens]), reused=1,
                                            rollout_ids=np.array([rollout_id], dtype=np.int64)))
        return [groups[i] for i in prompts]
