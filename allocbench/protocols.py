"""The environment protocol: the seam between strategies and the world they spend rollouts in.

``sim`` and ``real`` each implement these three small objects (DESIGN.md, "The environment
protocol"); strategies and the runner see nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Outcome:
    """The rollouts of one prompt: a group when trained on.

    ``rewards`` and ``tokens`` hold one entry per rollout. ``reused`` counts entries that were
    not generated now (cached answers): they are part of the group but cost no rollout.
    """

    prompt_id: int
    rewards: np.ndarray
    tokens: np.ndarray
    reused: int = 0

    @property
    def n(self) -> int:
        return len(self.rewards)

    @property
    def mean(self) -> float:
        return float(self.rewards.sum()) / len(self.rewards)  # ndarray.mean's overhead shows at 10^5 calls

    @property
    def std(self) -> float:
        return float(self.rewards.std())

    def merge(self, other: Outcome) -> Outcome:
        """The union of two rollout sets of the same prompt (e.g. pilot + commit)."""
        if other.prompt_id != self.prompt_id:
            raise ValueError(f"cannot merge prompt {other.prompt_id} into prompt {self.prompt_id}")
        return Outcome(
            self.prompt_id,
            np.concatenate([self.rewards, other.rewards]),
            np.concatenate([self.tokens, other.tokens]),
            self.reused + other.reused,
        )


class Sampler(Protocol):
    def sample(self, requests: Mapping[int, int]) -> list[Outcome]:
        """One generation round: ``requests`` maps prompt id -> number of rollouts."""


class Learner(Protocol):
    def update(self, groups: list[Outcome]) -> dict:
        """One optimizer step on the committed groups."""


class Evaluator(Protocol):
    def evaluate(self) -> dict:
        """Held-out metrics; must contain ``eval_acc``."""


@dataclass
class Environment:
    """What a run needs from an environment, plus its defaults for the per-step shape."""

    name: str  # "sim" or "real"
    scenario: str
    sampler: Sampler
    learner: Learner
    evaluator: Evaluator
    prompt_ids: np.ndarray
    epoch_order: Callable[[np.random.Generator], np.ndarray]
    train_batch: int  # prompts per step (B) the scenario's baseline uses
    group_size: int  # rollouts per prompt (n) the scenario's baseline uses
    info: dict = field(default_factory=dict)
    # checkpoint hooks: write / read the environment's own state (model, optimizer, RNGs) in a
    # folder the runner provides; None for an environment that cannot resume
    save: Callable[[Path], None] | None = None
    load: Callable[[Path], None] | None = None
