from dataclasses import dataclass

from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, guard_rounds, hyper, register


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

    def resolved(self, train_batch: int, group_size: int) -> dict:
        return {**super().resolved(train_batch, group_size),
                "gen_batch_size": self.gen_batch_size or 3 * train_batch}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        gen_batch_size = self.gen_batch_size or 3 * ctx.train_batch
        kept: list[Outcome] = []
        rounds = 0
        while len(kept) < ctx.train_batch:
            guard_rounds(self.name, rounds, self.max_num_gen_batches, len(kept), ctx.train_batch)
            rounds += 1
            prompts = ctx.candidates.take(gen_batch_size)
            outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in prompts})
            kept += [o for o in outcomes.values() if o.std > 0]
        return kept[: ctx.train_batch]
