"""Simulator scenarios. Every parameter is documented on ``Scenario``; a scenario is a frozen,
range-checked set of them: a built-in one by name, or a TOML file (``--scenario path.toml``,
optionally ``base = "NAME"`` plus the fields it changes; ``allocbench scenarios --show NAME``
prints one that loads back, and ``allocbench calibrate`` writes one fitted to real runs).

The ``paper-*`` scenarios are shaped after the configurations of the Pilot-Commit paper's
results table (arXiv 2605.26606): pool size of the training set, group size n and train batch
of its scripts, a model-size-dependent starting pass-rate distribution, and the regime known of
such runs (AdamW at lr 1e-6; a gradient noise scale near 8k rollouts, the optimal batch PCL,
arXiv 2510.01135, reports for runs like these). They are caricatures for ranking strategies, not
fits to the paper's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from allocbench.config import read_toml, toml_value
from allocbench.errors import ConfigError

OPTIMIZERS = ("adam", "sgd")
SATURATIONS = ("ceiling", "log")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    pool_size: int = 8_000  # training prompts
    eval_size: int = 1_000  # held-out prompts, same distribution, scored as expected pass@1
    n_skills: int = 8  # latent skill dimensions shared by all prompts
    # initial logit offsets: a mixture of normals, ((weight, mean, std), ...)
    offsets: tuple = ((0.35, -4.0, 1.5), (0.35, 0.0, 1.5), (0.30, 3.5, 1.5))
    loading_scale: float = 2.0  # a prompt's loadings sum to this (how much skill moves it)
    loading_concentration: float = 0.5  # Dirichlet alpha: small = prompts use few skills
    # spread of how learnable prompts are: each prompt's loadings sum to loading_scale times a
    # log-normal factor with this sigma (mean 1); 0 = all alike, large = some barely move
    loading_spread: float = 0.0
    # how far the skills move a held-out prompt, relative to a training prompt of the same
    # loadings: < 1 when the held-out set leans on what the pool rarely trains (the tiny tier's
    # 200 held-out problems draw the six arithmetic levels alike, its 20,000-problem pool is
    # 90% levels 3 and 5), so held-out accuracy gains less than the pool's pass rates
    eval_transfer: float = 1.0
    skill_cap: float = 2.5  # skill saturates at this per dimension (a plateau below 100%)
    # how skill saturates along each dimension, c(s) the part of a logit a skill s adds:
    # "ceiling", c = skill_cap tanh(s / skill_cap), a plateau no training passes; "log",
    # c = skill_cap asinh(s / skill_cap), linear up to about skill_cap and logarithmic after it:
    # returns diminish without a ceiling (the tiny tier's real held-out accuracy keeps growing
    # about log-linearly in steps to the end of its 200-step runs)
    skill_saturation: str = "ceiling"
    # the optimizer: "adam" (per-coordinate running moments: a step of about lr per coordinate
    # when the signal dominates, about lr x signal-to-noise when noise does) or "sgd" (a step of
    # lr x gradient, so zero-variance groups dilute it)
    optimizer: str = "adam"
    lr: float = 0.02  # adam: step per coordinate at full signal; sgd: step per unit of gradient
    adam_beta1: float = 0.9  # adam: decay of the running mean of gradients
    adam_beta2: float = 0.999  # adam: decay of the running mean of squared gradients
    # gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018) of the initial
    # policy on uniformly drawn groups of the baseline's n, in rollouts: a step's signal-to-noise
    # ratio reaches 1 near this many rollouts, so beyond it extra samples stop paying
    noise_scale: float = 2_000.0
    nuisance_dims: int = 512  # parameter directions no prompt's skill uses; noise moves them too
    drift: float = 10.0  # how much the nuisance directions' mean square displacement lowers every logit
    len_correct: float = 600.0  # mean tokens of a correct rollout
    len_wrong: float = 1_000.0  # mean tokens of a wrong rollout (wrong answers ramble)
    len_sigma: float = 0.4  # log-normal spread of rollout lengths
    max_tokens: int = 4_096  # response length cap
    train_batch: int = 64  # B of the scenario's baseline
    group_size: int = 16  # n of the scenario's baseline
    steps: int = 300  # default training steps of a comparison
    # prompt features (Environment.features, for strategies that predict pass rates: pcl, gps):
    # each prompt's standardised offset and skill loadings, through a fixed random projection
    # into 2 x (1 + n_skills) dimensions, plus Gaussian noise of this std per coordinate (in
    # units of a standardised source coordinate). At the default a least-squares fit recovers the
    # starting pass-rate logits only roughly (R^2 about 0.5); 0 = an exact view
    feature_noise: float = 1.0
    # the cost of stale rollouts: a rollout trained after the weights that drew it were updated
    # pulls the skills back towards those weights' (its completions show what they could do);
    # per informative rollout the skills' gradient gains stale_pull x (s_drawn - s) / N.
    # 0 = a stale rollout teaches as much as a fresh one (sim/env.py)
    stale_pull: float = 0.0
    # the cost of training a rollout again (a reused, cached answer): its noise, the part of its
    # gradient particular to that completion, stays what it was at its first training for this
    # many updates, so a replay repeats its noise where a fresh rollout would average it down.
    # 0 = every training of a rollout draws fresh noise: a replay is as good as a new rollout (sim/env.py).
    # The last replay_window updates' trained groups are kept in memory while it is on
    replay_window: int = 0

    def __post_init__(self):
        object.__setattr__(self, "offsets", tuple(tuple(float(v) for v in c) for c in self.offsets))
        check(self)


def check(sc: Scenario) -> None:
    """Every range the model needs; ConfigError names the first field out of it."""
    positive_ints = ("pool_size", "eval_size", "n_skills", "max_tokens", "train_batch", "group_size", "steps")
    rules: list[tuple[bool, str]] = [
        *((isinstance(getattr(sc, f), int) and getattr(sc, f) > 0, f"{f} must be a positive integer")
          for f in positive_ints),
        *((isinstance(getattr(sc, f), int) and getattr(sc, f) >= 0, f"{f} must be an integer >= 0")
          for f in ("nuisance_dims", "replay_window")),
        (len(sc.offsets) > 0 and all(len(c) == 3 and c[0] > 0 and c[2] >= 0 for c in sc.offsets),
         "offsets must be a non-empty list of [weight > 0, mean, std >= 0] components"),
        (sc.loading_scale > 0, "loading_scale must be > 0"),
        (sc.loading_concentration > 0, "loading_concentration must be > 0"),
        (sc.loading_spread >= 0, "loading_spread must be >= 0"),
        (sc.eval_transfer >= 0, "eval_transfer must be >= 0"),
        (sc.skill_cap > 0, "skill_cap must be > 0"),
        (sc.skill_saturation in SATURATIONS, f"skill_saturation must be one of {', '.join(SATURATIONS)}"),
        (sc.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (sc.lr > 0, "lr must be > 0"),
        (0 <= sc.adam_beta1 < 1 and 0 <= sc.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)"),
        (sc.noise_scale >= 0, "noise_scale must be >= 0"),
        (sc.drift >= 0, "drift must be >= 0"),
        (sc.feature_noise >= 0, "feature_noise must be >= 0"),
        (sc.stale_pull >= 0, "stale_pull must be >= 0"),
        (sc.len_correct > 0 and sc.len_wrong > 0 and sc.len_sigma >= 0,
         "len_correct, len_wrong must be > 0 and len_sigma >= 0"),
    ]
    numbers = [f.name for f in fields(sc) if f.type in ("int", "float")]  # the annotations, as strings
    for name in numbers:
        value = getattr(sc, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"scenario {sc.name!r}: {name} must be a finite number, got {value!r}")
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"scenario {sc.name!r}: {message}")


PAPER_REGIME = dict(lr=0.05, noise_scale=8_000.0)

_SCENARIOS = {s.name: s for s in [
    Scenario("default", "a spread of pass rates: a third unsolved, a third mixed, a third solved"),
    Scenario("hard", "most prompts start at pass rate 0; learning must bootstrap from a few",
             offsets=((0.80, -5.0, 1.5), (0.15, -1.0, 1.0), (0.05, 2.0, 1.0)), skill_cap=3.5),
    Scenario("easy", "most prompts start near pass rate 1; a few remain informative",
             offsets=((0.05, -3.0, 1.0), (0.15, 0.5, 1.0), (0.80, 4.5, 1.5))),
    Scenario("bimodal", "prompts either solved or unsolved at the start, few in between",
             offsets=((0.5, -5.0, 1.0), (0.05, 0.0, 1.0), (0.45, 5.0, 1.0))),
    # The paper's configurations. Pool sizes are the training sets' (DeepMath-103K,
    # Polaris-53K); n and B follow its scripts (n = 128 for 1.5B, 64 for Polaris; 128 prompts
    # per step). Larger models start with more prompts solved. Steps: the paper's horizons
    # (GRPO to 16.4M rollouts = 1,000 steps of 128 x 128 on DeepMath, to 4.1M = 500 steps of
    # 128 x 64 for Qwen3-8B on Polaris; 500 for the other Polaris runs).
    # the recipe's 1.5B script differs from the defaults a compare runs with: it commits in
    # max_variance order (--set pilot_commit.commit_order=max_variance) and allows 8192 response
    # tokens (lengths here are capped at 4096, which moves token counts, not rollouts)
    Scenario("paper-1.5b-deepmath", "Qwen2.5-Math-1.5B on DeepMath-103K, n = 128",
             pool_size=100_000, offsets=((0.45, -4.0, 1.5), (0.35, -0.5, 1.5), (0.20, 3.0, 1.5)),
             train_batch=128, group_size=128, steps=1000, **PAPER_REGIME),
    Scenario("paper-4b-polaris", "Qwen3-4B on Polaris-53K, n = 64",
             pool_size=53_000, offsets=((0.30, -3.5, 1.5), (0.35, 0.5, 1.5), (0.35, 3.5, 1.5)),
             train_batch=128, group_size=64, steps=500, **PAPER_REGIME),
    Scenario("paper-8b-polaris", "Qwen3-8B on Polaris-53K, n = 64",
             pool_size=53_000, offsets=((0.25, -3.5, 1.5), (0.35, 1.0, 1.5), (0.40, 4.0, 1.5)),
             train_batch=128, group_size=64, steps=500, **PAPER_REGIME),
    Scenario("paper-14b-polaris", "Qwen3-14B on Polaris-53K, n = 64",
             pool_size=53_000, offsets=((0.20, -3.5, 1.5), (0.35, 1.5, 1.5), (0.45, 4.5, 1.5)),
             train_batch=128, group_size=64, steps=500, **PAPER_REGIME),
]}


def scenario_names() -> list[str]:
    return list(_SCENARIOS)


def is_scenario_file(name: str) -> bool:
    return name.endswith(".toml") or Path(name).is_file()


def get_scenario(name: str | Scenario, **overrides) -> Scenario:
    """A built-in scenario by name, a scenario TOML file or a ``Scenario``, with ``overrides``
    (field values) applied; every value range-checked."""
    if isinstance(name, Scenario):
        base = name
    elif is_scenario_file(name):
        base = load_toml(Path(name))
    elif name in _SCENARIOS:
        base = _SCENARIOS[name]
    else:
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(_SCENARIOS)} (or a .toml file)")
    return with_fields(base, overrides, f"scenario {base.name!r}")


def with_fields(base: Scenario, values: dict[str, Any], where: str) -> Scenario:
    known = {f.name: f for f in fields(Scenario)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: no field {', '.join(unknown)}; fields: {', '.join(known)}")
    coerced = {}
    for key, value in values.items():
        current = getattr(base, key)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(tuple(c) if isinstance(c, list) else c for c in value)
        if not isinstance(value, type(current)) or (isinstance(value, bool) and not isinstance(current, bool)):
            raise ConfigError(f"{where}: {key} must be {type(current).__name__}, got {value!r}")
        coerced[key] = value
    try:
        return replace(base, **coerced)
    except ConfigError as e:  # a range check: say where the value came from
        raise ConfigError(e if where.startswith("scenario ") else f"{where}: {e}") from None


def load_toml(path: Path) -> Scenario:
    """A scenario file: its fields, over ``base = "NAME"`` (a built-in scenario) if given."""
    table = read_toml(path, "scenario file")
    base_name = table.pop("base", None)
    if base_name is not None and base_name not in _SCENARIOS:
        raise ConfigError(f"{path}: base scenario {base_name!r} unknown; known: {', '.join(_SCENARIOS)}")
    base = _SCENARIOS[base_name] if base_name else Scenario(path.stem, f"from {path}")
    table.setdefault("name", path.stem)
    return with_fields(base, table, str(path))


def to_toml(sc: Scenario) -> str:
    """The scenario as a TOML file ``load_toml`` reads back to an equal Scenario."""
    lines = ["# allocbench simulator scenario; fields documented in sim/scenarios.py"]
    for f in fields(sc):
        lines.append(f"{f.name} = {toml_value(getattr(sc, f.name))}")
    return "\n".join(lines) + "\n"
