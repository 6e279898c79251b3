"""What a study tunes and how its trials are scored (``TuneConfig``), the objective's constants
and the study-wide names (search space, contour pair, formatting)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from allocbench.config import check_target
from allocbench.errors import ConfigError
from allocbench.runner import RunConfig
from allocbench.strategy import strategy_class

OBJECTIVES = ("rollouts", "auc")
CAP_FACTOR = 3.0  # a rollouts-objective run may spend at most this x grpo's rollouts
AUC_STEP_FACTOR = 4  # an auc run may take this x steps to spend grpo's rollouts
GRID = 20  # pruning checkpoints per seed
DEFAULT_DIR = Path("results") / "tune"
HEARTBEAT_S = 60  # a running trial writes a heartbeat this often ...
GRACE_S = 180  # ... and is failed (and retried) when it has been silent this long
REFERENCE = "grpo"


_DEFAULT_STEPS: dict = {}


@dataclass(frozen=True)
class TuneConfig:
    """What a study tunes and how each trial is scored; every worker of a study must agree."""

    strategy: str
    scenario: str = "default"
    seeds: int = 3
    steps: int | None = None  # None: the scenario's default
    objective: str = "rollouts"
    target: float | None = None  # None: grpo's peak seed-mean accuracy
    env: str = "sim"
    eval_every: int = 10
    train_batch: int | None = None
    group_size: int | None = None
    overrides: tuple = ()  # ((scenario parameter, value), ...), e.g. a tiny pool for tests

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not isinstance(self.seeds, int) or self.seeds <= 0:
            raise ConfigError(f"--seeds must be a positive integer, got {self.seeds!r}")
        check_target(self.target)
        RunConfig(steps=self.steps or 1, eval_every=self.eval_every, train_batch=self.train_batch,
                  group_size=self.group_size)  # checks the shape arguments

    @property
    def minimise(self) -> bool:
        return self.objective == "rollouts"

    def make_env(self, seed: int, scenario: str | None = None):
        from allocbench.envs import make_env

        return make_env(self.env, scenario or self.scenario, seed=seed, **dict(self.overrides))

    def resolved_steps(self, scenario: str | None = None) -> int:
        if self.steps is not None:
            return self.steps
        key = (self.env, scenario or self.scenario, self.overrides)
        if key not in _DEFAULT_STEPS:  # building an environment may be costly (real)
            _DEFAULT_STEPS[key] = int(self.make_env(0, scenario).info.get("steps", 200))
        return _DEFAULT_STEPS[key]

    def settings(self) -> dict:
        """The JSON form kept in the study (the target is kept apart)."""
        out = dataclasses.asdict(self)
        out.pop("target")
        out["steps"] = self.resolved_steps()
        out["overrides"] = sorted([k, v] for k, v in self.overrides)
        return json.loads(json.dumps(out))


def searched_fields(strategy: str) -> list[str]:
    """The hyper-parameters of ``strategy`` that declare a search space, in field order."""
    return [f.name for f in dataclasses.fields(strategy_class(strategy)) if f.metadata.get("search") is not None]


def contour_params(strategy: str) -> tuple[str, str] | None:
    """The pair of searched hyper-parameters the tuning contour shows: the strategy's
    ``contour`` declaration, else its first two searched fields; None with fewer than two."""
    space = searched_fields(strategy)
    declared = tuple(strategy_class(strategy).contour)
    if declared:
        if len(declared) != 2 or len(set(declared)) != 2 or not set(declared) <= set(space):
            raise ConfigError(f"{strategy}.contour must name two different searched hyper-parameters "
                              f"({', '.join(space)}), got {declared}")
        return declared[0], declared[1]
    return (space[0], space[1]) if len(space) >= 2 else None


def fmt(value: float, config: TuneConfig) -> str:
    return f"{value:,.0f}" if config.minimise else f"{value:.4f}"


def seed_range(first: int, end: int) -> str:
    return f"seed {first}" if end - first == 1 else f"seeds {first}-{end - 1}"
