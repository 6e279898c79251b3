from dataclasses import dataclass

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, fill_with_filter, hyper, register


@register("online_filter")
@dataclass
class OnlineFilter(Strategy):
    """Balanced online difficulty filtering (Bae et al., "Online Difficulty Filtering for
    Reasoning Oriented Reinforcement Learning", arXiv 2504.03380).

    Rule: each generation round draws ``gen_batch_size`` prompts x n rollouts and keeps the
    groups whose accuracy lies in [low, high]; rounds repeat until B groups are kept, the
    surplus is cut, and after ``max_num_gen_batches`` rounds without a full batch the run
    stops with an error (as DAPO's dynamic sampling does).

    Paper symbols: the accuracy band of the balanced filter [p_low, p_high] = [low, high]
    (0.25 and 0.75 by default, the paper's balanced setting as we read it; low = 1/n and
    high = 1 - 1/n give DAPO's std > 0 filter); n and B are the run's. Simplified: the paper keeps
    filling a rollout buffer across generation batches (its "stacked" batch) and may carry
    kept groups over; here the surplus of the last round is cut and nothing is carried over.
    """

    low: float = hyper(0.25, "keep groups with accuracy >= low", low=0.0, high=1.0, search=(0.0, 0.5))
    high: float = hyper(0.75, "keep groups with accuracy <= high", low=0.0, high=1.0, search=(0.5, 1.0))
    gen_batch_size: int | None = hyper(
        None, "prompts drawn per generation round; default 2 x train batch", low=1)
    max_num_gen_batches: int = hyper(
        10, "generation rounds per step before giving up; 0 = unbounded", low=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low > self.high:
            raise ConfigError(f"online_filter.low={self.low} is above high={self.high}")

    def derive(self, train_batch: int, group_size: int) -> dict:
        return {"gen_batch_size": self.gen_batch_size or 2 * train_batch}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        return fill_with_filter(ctx, self.name, self.gen_batch_size, self.max_num_gen_batches,
                                keep=lambda group: self.low <= group.mean <= self.high)
