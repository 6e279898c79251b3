from dataclasses import dataclass

from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, fill_with_filter, hyper, register


@register("dapo")
@dataclass
class DAPO(Strategy):
    """DAPO dynamic sampling (Yu et al., arXiv 2503.14476), as verl's DAPO recipe implements it.

    Rule: each generation round draws ``gen_batch_size`` prompts x n rollouts and keeps the
    groups whose reward std > 0; rounds repeat until B groups are kept, the surplus is cut,
    and after ``max_num_gen_batches`` rounds without a full batch the run stops with an error.
    """

    gen_batch_size: int | None = hyper(
        None, "prompts drawn per generation round; default 3 x train batch (384 for B=128)",
        low=1)
    max_num_gen_batches: int = hyper(
        10, "generation rounds per step before giving up; 0 = unbounded", low=0)

    def derive(self, train_batch: int, group_size: int) -> dict:
        return {"gen_batch_size": self.gen_batch_size or 3 * train_batch}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        return fill_with_filter(ctx, self.name, self.gen_batch_size, self.max_num_gen_batches,
                                keep=lambda group: group.std > 0)
