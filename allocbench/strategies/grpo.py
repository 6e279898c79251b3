from dataclasses import dataclass

from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register


@register("grpo")
@dataclass
class GRPO(Strategy):
    """Uniform allocation, the baseline of every allocation paper.

    GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300) as the Pilot-Commit paper runs it: the DAPO
    recipe with dynamic sampling off. Rule: take the next B prompts from the data loader, give
    each n rollouts, train on every group, informative or not. B and n come from the run.

    ``lag`` > 0 runs it as an asynchronous pipeline does (generation ``lag`` steps ahead of the
    learner, as in AReaL or verl's one-step off-policy trainer): each step trains on the groups
    drawn ``lag`` steps earlier, nothing in the first ``lag`` steps, and the last ``lag`` steps'
    draws are paid for but never trained on. It measures what stale rollouts cost the learner
    with GRPO's own sampling (``allocbench calibrate --params stale_pull``).
    """

    # at most the real rollout store's default retention (real/rollouts.py)
    lag: int = hyper(0, "steps between drawing a group and training on it (0: on-policy)", low=0, high=16)

    def collect(self, ctx: StepContext) -> list[Outcome]:
        prompts = ctx.candidates.take(ctx.train_batch)
        drawn = list(ctx.sampler.sample({int(i): ctx.group_size for i in prompts}).values())
        if not self.lag:
            return drawn
        queue = ctx.memory.setdefault("drawn", [])
        queue.append(drawn)
        return queue.pop(0) if len(queue) > self.lag else []
