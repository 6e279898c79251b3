import math
from dataclasses import dataclass

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from allocbench.strategy import StepContext, Strategy, guard_rounds, hyper, register


@register("greso")
@dataclass
class GRESO(Strategy):
    """GRESO, "Act Only When It Pays: Efficient RL for LLM Reasoning via Selective Rollouts"
    (Zheng et al., arXiv 2506.02177), as its verl code (Infini-AI-Lab/GRESO, strategy
    ``all_probabilistic``) runs it.

    Rule: before rollout, a prompt whose last k groups in a row were all-correct (all-wrong) is
    skipped with probability 1 - max(p_easy^k, min_keep) (p_hard for all-wrong); the rest get n
    rollouts and are filtered as DAPO does (std > 0 kept, refill until B, surplus cut). After
    each step (from the second epoch on) p_easy / p_hard move by ``step_size``: down when that
    kind's share of the step's groups is at or above its target, up otherwise.

    Paper symbols: p_easy, p_hard = explore_easy, explore_hard (initial values; 0.5 in the
    scripts); alpha (targeted zero-variance share, 25%) = target_zero_var, split 1/3 easy and
    2/3 hard by easy_share (our reading of the paper; the split is not in the code we read); Delta p (0.01) = step_size; the clip range [0.05, 0.95] =
    explore_min, explore_max; the 0.01 floor on p^k = min_keep; sampling_batch_size =
    gen_batch_size; the 1.25 factor of the adaptive refill size = oversample.

    The first round is 1.5 x B, not dapo's 3 x B: GRESO saves rollouts through fewer and
    smaller refill rounds, so with a first round large enough to fill every step it would only
    change which prompts are rolled out, not how many.

    Simplified: a refill round rolls out ceil(missing / (1 - zero-variance share so far) x
    oversample) prompts (capped at gen_batch_size) without the recipe's 64-prompt minimum; easy
    and hard mean exactly zero-variance (std = 0) rather than the recipe's >= 0.98 / <= 0.11
    mean-reward thresholds; a prompt's streak counts its rolled-out groups in a row (once per
    epoch under the data loader, as in the paper).
    """

    explore_easy: float = hyper(
        0.5, "initial p_easy: a prompt all-correct k times in a row is rolled out with p_easy^k",
        low=0.0, high=1.0, open_low=True, search=(0.05, 0.95))
    explore_hard: float = hyper(
        0.5, "initial p_hard: a prompt all-wrong k times in a row is rolled out with p_hard^k",
        low=0.0, high=1.0, open_low=True, search=(0.05, 0.95))
    target_zero_var: float = hyper(
        0.25, "targeted share of zero-variance groups among those rolled out (alpha)",
        low=0.0, high=1.0, open_low=True, open_high=True, search=(0.05, 0.6))
    easy_share: float = hyper(
        1 / 3, "part of the target given to all-correct groups; the rest to all-wrong ones",
        low=0.0, high=1.0, search=(0.1, 0.9))
    step_size: float = hyper(
        0.01, "change of p_easy and p_hard after each step (Delta p)",
        low=0.0, high=1.0, open_low=True, search=(0.002, 0.05), log=True)
    explore_min: float = hyper(0.05, "p_easy and p_hard never go below this",
                               low=0.0, high=1.0, open_low=True)
    explore_max: float = hyper(0.95, "p_easy and p_hard never go above this",
                               low=0.0, high=1.0)
    min_keep: float = hyper(
        0.01, "floor on a prompt's rollout probability p^k, however long its streak",
        low=0.0, high=1.0, open_low=True)
    gen_batch_size: int | None = hyper(
        None, "prompts rolled out in a step's first round (after skipping); default 1.5 x B "
        "(the scripts' sampling_batch_size 384 for 256)", low=1)
    oversample: float = hyper(
        1.25, "a refill round rolls out missing / (1 - zero-variance share) x this prompts",
        low=1.0, search=(1.0, 2.0))
    max_num_gen_batches: int = hyper(
        10, "generation rounds per step before giving up; 0 = unbounded", low=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.explore_min > self.explore_max:
            raise ConfigError(f"greso.explore_min ({self.explore_min}) must not exceed "
                              f"explore_max ({self.explore_max})")

    def derive(self, train_batch: int, group_size: int) -> dict:
        return {"gen_batch_size": self.gen_batch_size or math.ceil(1.5 * train_batch)}

    def collect(self, ctx: StepContext) -> list[Outcome]:
        # prompt id -> +k: its last k groups were all-correct, -k: all-wrong, 0: informative
        streak: dict[int, int] = ctx.memory.setdefault("streak", {})
        explore = ctx.memory.setdefault("explore", {"easy": self.explore_easy,
                                                    "hard": self.explore_hard})
        kept: list[Outcome] = []
        rolled = easy = hard = 0
        rounds, want = 0, self.gen_batch_size
        while len(kept) < ctx.train_batch:
            guard_rounds(self.name, rounds, self.max_num_gen_batches, len(kept), ctx.train_batch)
            rounds += 1
            prompts = self.draw(ctx, want, streak, explore)
            outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in prompts})
            groups = [outcomes[int(i)] for i in prompts]
            std = np.array([g.std for g in groups])
            mean = np.array([g.mean for g in groups])
            is_easy, is_hard = (std == 0) & (mean > 0), (std == 0) & (mean <= 0)
            kept += [g for g, s in zip(groups, std) if s > 0]
            self.record(streak, prompts, is_easy, is_hard)

            rolled, easy, hard = rolled + len(prompts), easy + is_easy.sum(), hard + is_hard.sum()
            informative = max(1 - (easy + hard) / rolled, 1e-9)
            missing = ctx.train_batch - len(kept)
            want = min(self.gen_batch_size, math.ceil(missing / informative * self.oversample))

        if ctx.candidates.epoch > 1:  # no prompt has a history in the first epoch
            self.adjust(explore, easy / rolled, hard / rolled)
        return kept[: ctx.train_batch]

    def draw(self, ctx: StepContext, want: int, streak: dict, explore: dict) -> np.ndarray:
        """Take prompts from the data loader until ``want`` survive the pre-rollout skip."""
        survivors: list[np.ndarray] = []
        missing = want
        while missing > 0:
            candidates = ctx.candidates.take(missing)
            k = np.array([streak.get(int(i), 0) for i in candidates])
            rollout_p = np.where(k > 0, explore["easy"] ** k, explore["hard"] ** -k)
            rollout_p = np.maximum(rollout_p, self.min_keep)  # k = 0: p^0 = 1, never skipped
            survivors.append(candidates[ctx.rng.random(len(candidates)) < rollout_p])
            missing -= len(survivors[-1])
        return np.concatenate(survivors)

    @staticmethod
    def record(streak: dict, prompts: np.ndarray, is_easy: np.ndarray, is_hard: np.ndarray) -> None:
        old = np.array([streak.get(int(i), 0) for i in prompts])
        new = np.where(is_easy, np.maximum(old, 0) + 1, np.where(is_hard, np.minimum(old, 0) - 1, 0))
        streak.update(zip(prompts.tolist(), new.tolist()))

    def adjust(self, explore: dict, easy_ratio: float, hard_ratio: float) -> None:
        """Explore less (skip more) of a kind whose zero-variance share met its target."""
        target = {"easy": self.easy_share * self.target_zero_var,
                  "hard": (1 - self.easy_share) * self.target_zero_var}
        for kind, ratio in (("easy", easy_ratio), ("hard", hard_ratio)):
            step = -self.step_size if ratio >= target[kind] else self.step_size
            explore[kind] = float(np.clip(explore[kind] + step, self.explore_min, self.explore_max))
