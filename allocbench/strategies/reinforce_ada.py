from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, hyper, register, sample_until


@register("reinforce_ada")
@dataclass
class ReinforceAda(Strategy):
    """Reinforce-Ada (Xiong et al., "Reinforce-Ada: An Adaptive Sampling Framework for
    Reinforce-Style LLM Training", arXiv 2510.04996), as its verl code
    (RLHFlow/Reinforce-Ada, ``_generate_multi_round_adaptive_downsampling``) runs it.

    Rule: take B prompts; each round gives every still-active prompt ``round_n`` rollouts (one
    sampler call for all of them), and a prompt leaves once its exit rule holds or it has
    ``max_rollouts``; each prompt's pool is then down-sampled to n rollouts, half correct and
    half wrong where it has them, and trained on. ``exit_rule="pos"``: at least one correct
    answer (Reinforce-Ada-pos); ``"balanced"``: at least n/2 correct and n - n/2 wrong
    (Reinforce-Ada-balance). A prompt also needs n rollouts in hand before it may leave, so
    every trained group has exactly n.

    Paper symbols: the final group size n = the run's n (``rollout.n``); M, the per-round
    samples = ``round_n`` (``round_repeat``); the round cap (``max_rounds``) is expressed as the
    per-prompt cap ``max_rollouts`` = max_rounds x round_n; ``reinforce_ada_choice`` =
    ``exit_rule``. Simplified: the paper's advantage uses global statistics (the mean and std
    of the prompt's whole pool, not of the down-sampled group); the learner here sees only the
    trained group, so that correction is lost. Down-sampling keeps the earliest rollouts of
    each kind, as the code does.
    """

    exit_rule: str = hyper("balanced", "pos: one correct answer; balanced: n/2 correct and n/2 wrong",
                           choices=("pos", "balanced"), search=("pos", "balanced"))
    round_n: int | None = hyper(None, "rollouts per active prompt per round; default the run's n",
                                low=1, search=(2, 32), log=True)
    max_rollouts: int | None = hyper(
        None, "cap on rollouts per prompt (max_rounds x round_n); default 4 x the run's n; >= n",
        low=1)

    def derive(self, train_batch: int, group_size: int) -> dict:
        cap = self.max_rollouts or 4 * group_size
        if cap < group_size:
            raise ConfigError(f"reinforce_ada.max_rollouts={cap} is below the group size n={group_size}")
        return {"round_n": self.round_n or group_size, "max_rollouts": cap}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        n = ctx.group_size
        need_pos, need_neg = (1, 0) if self.exit_rule == "pos" else (n // 2, n - n // 2)

        def exit_rule_holds(pool: Outcome) -> bool:
            correct = int((pool.rewards > 0.5).sum())
            return pool.n >= n and correct >= need_pos and pool.n - correct >= need_neg

        prompts = [int(i) for i in ctx.candidates.take(ctx.train_batch)]
        pools = sample_until(ctx, prompts, self.round_n, self.max_rollouts, finished=exit_rule_holds)
        return [downsample(pools[i], n) for i in prompts]


def downsample(pool: Outcome, n: int) -> Outcome:
    """n rollouts of ``pool``: up to n/2 correct, the rest wrong, topped up from whichever kind
    has more; the earliest rollouts of each kind first."""
    correct = np.flatnonzero(pool.rewards > 0.5)
    wrong = np.flatnonzero(pool.rewards <= 0.5)
    k_pos = min(n // 2, len(correct))
    k_neg = min(n - k_pos, len(wrong))
    k_pos = min(n - k_neg, len(correct))
    keep = np.sort(np.concatenate([correct[:k_pos], wrong[:k_neg]]))
    return Outcome(pool.prompt_id, pool.rewards[keep], pool.tokens[keep], pool.reused, pool.rollout_ids[keep])
