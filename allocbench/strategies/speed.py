from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, guard_rounds, hyper, register


@register("speed")
@dataclass
class SPEED(Strategy):
    """SPEED-RL, Selective Prompting with Efficient Estimation of Difficulty ("SPEED-RL: Faster
    Training of Reasoning Models via Online Curriculum Learning", Zhang et al., arXiv 2506.09016).

    Rule: screen fresh prompts with n_init rollouts; those with 0 < p-hat < 1 (screening reward
    std > 0) are accepted and get the remaining n - n_init rollouts in the next generation round,
    where they ride along with the screening of the next fresh batch (one call, as SPEED
    pipelines them); a trained group is screening + continuation rollouts. Rounds repeat until B
    groups are complete. Accepted prompts not yet continued wait, oldest first, across steps.

    Paper symbols: N_init = n_init; N = the run's n (so N_cont = n - n_init); the screening
    batch = screen_batch.

    Simplified: acceptance is exactly the paper's 0 < p-hat < 1 (no tunable band); a fresh batch
    is screened only while fewer than B accepted prompts wait, so the waiting buffer stays
    bounded (at most B + screen_batch) instead of SPEED's fixed-size screening in every call;
    screening rollouts are counted as pilot rollouts by the ledger.
    """

    n_init: int = hyper(4, "screening rollouts per fresh prompt (N_init); must be below n",
                        low=1, search=(2, 8))
    screen_batch: int | None = hyper(
        None, "fresh prompts screened per round; default 2 x B", low=1)
    max_num_gen_batches: int = hyper(
        10, "generation rounds per step before giving up; 0 = unbounded", low=0)

    def derive(self, train_batch: int, group_size: int) -> dict:
        if self.n_init >= group_size:
            raise ConfigError(f"speed.n_init ({self.n_init}) must be below the group size "
                              f"n ({group_size}): nothing would be left to continue")
        return {"screen_batch": self.screen_batch or 2 * train_batch}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        n_cont = ctx.group_size - self.n_init
        # prompt id -> its screening rollouts, accepted and waiting for continuation (oldest first)
        accepted: dict[int, Outcome] = ctx.memory.setdefault("accepted", {})
        batch: list[Outcome] = []
        rounds = 0
        while len(batch) < ctx.train_batch:
            guard_rounds(self.name, rounds, self.max_num_gen_batches, len(batch), ctx.train_batch)
            rounds += 1
            continued = list(accepted)[: ctx.train_batch - len(batch)]
            fresh = np.empty(0, dtype=np.int64)
            if len(accepted) - len(continued) < ctx.train_batch:  # stock up for what comes next
                fresh = ctx.candidates.take(self.screen_batch)
                fresh = fresh[~np.isin(fresh, list(accepted))]  # re-drawn in a new epoch: waits
            outcomes = ctx.sampler.sample({i: n_cont for i in continued},
                                          pilot={int(i): self.n_init for i in fresh})
            batch += [accepted.pop(i).merge(outcomes[i]) for i in continued]
            accepted.update((int(i), outcomes[int(i)]) for i in fresh if outcomes[int(i)].std > 0)
        return batch
