from dataclasses import dataclass

from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, register


@register("grpo")
@dataclass
class GRPO(Strategy):
    """Uniform allocation, the baseline of every allocation paper.

    GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300) as the Pilot-Commit paper runs it: the DAPO
    recipe with dynamic sampling off. Rule: take the next B prompts from the data loader, give
    each n rollouts, train on every group, informative or not. B and n come from the run.
    """

    def collect(self, ctx: StepContext) -> list[Outcome]:
        prompts = ctx.candidates.take(ctx.train_batch)
        outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in prompts})
        return list(outcomes.values())
