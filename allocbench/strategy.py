"""The strategy API: a base class, typed hyper-parameters with ranges and search spaces, and
the name registry.

A strategy is a dataclass of hyper-parameters. Each field is declared with ``hyper(...)``, which
records its valid range (checked on construction) and its Optuna search space, next to the
field itself. The strategy's memory across steps lives in ``ctx.memory``, not on the object, so
one strategy object can serve many runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from allocbench.data import CandidateStream
from allocbench.errors import ConfigError, DataTooHard
from allocbench.ledger import Ledger
from allocbench.protocols import Outcome


def hyper(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    choices: tuple | None = None,
    search: tuple | None = None,
    log: bool = False,
) -> Any:
    """A hyper-parameter field.

    ``low``/``high`` bound the valid values (``open_*`` excludes the bound); ``choices`` lists
    the valid values of a categorical one. ``search`` is the Optuna range ``(lo, hi)`` or the
    categorical choices to tune over; ``log`` samples the range on a log scale.
    """
    meta = dict(help=help, low=low, high=high, open_low=open_low, open_high=open_high,
                choices=choices, search=search, log=log)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class StepContext:
    """What a strategy sees during one training step."""

    step: int  # 1-based training step
    train_batch: int  # B: prompts per step the run asks for
    group_size: int  # n: the baseline's rollouts per prompt
    sampler: Ledger  # every rollout goes through here and is counted
    candidates: CandidateStream  # fresh prompts in data-loader order
    memory: dict  # the strategy's own state, kept across steps of one run
    rng: np.random.Generator  # the strategy's own random stream
    # the learner's report of the previous update, read-only and empty at step 1; sim and real
    # share the keys noise_scale, noise_trace, noise_grad_sq (the gradient noise scale B_simple
    # = noise_trace / noise_grad_sq, in rollouts), informative_samples and zero_adv_share
    last_update: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class Strategy:
    """Base class. Subclasses are dataclasses registered with ``@register(name)``."""

    name: ClassVar[str] = ""
    contour: ClassVar[tuple[str, ...]] = ()
    """The searched hyper-parameter pair the tuning contour shows; () = the first two searched."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(type(self).name, f, getattr(self, f.name))

    def collect(self, ctx: StepContext) -> list[Outcome]:
        """Spend rollouts through ``ctx.sampler`` and return the groups to train on."""
        raise NotImplementedError

    def derive(self, train_batch: int, group_size: int) -> dict:
        """The values that depend on the run's B and n: hyper-parameters left at None filled
        in, and derived sizes that are not hyper-parameters (Pilot-Commit's commit_n). Raise
        ConfigError for a setting this B or n cannot run. Default: nothing to derive."""
        return {}

    def bind(self, train_batch: int, group_size: int) -> Strategy:
        """A copy for runs of this B and n with ``derive``'s values in place: its fields are
        replaced (and range-checked again), the other derived sizes become attributes. The
        runner binds once, before the first step, so ``collect`` reads resolved values and
        every check that needs B or n fails before a rollout is spent."""
        derived = self.derive(train_batch, group_size)
        names = {f.name for f in dataclasses.fields(self)}
        bound = dataclasses.replace(self, **{k: v for k, v in derived.items() if k in names})
        bound.derived = {k: v for k, v in derived.items() if k not in names}
        for key, value in bound.derived.items():
            setattr(bound, key, value)
        return bound

    def hyper_parameters(self) -> dict:
        """The ``hp_*`` columns of a run: every field, then the derived sizes of a bound copy."""
        return {**dataclasses.asdict(self), **getattr(self, "derived", {})}

    def resolved(self, train_batch: int, group_size: int) -> dict:
        """The hyper-parameters a run with this B and n uses."""
        return self.bind(train_batch, group_size).hyper_parameters()

    @classmethod
    def search_space(cls, trial) -> dict:
        """Optuna suggestions for every field that declares a ``search`` range."""
        params = {}
        for f in dataclasses.fields(cls):
            space = f.metadata.get("search")
            if space is None:
                continue
            if f.metadata.get("choices") is not None or isinstance(space[0], (str, bool)):
                params[f.name] = trial.suggest_categorical(f.name, list(space))
            elif isinstance(f.default, float) or isinstance(space[0], float):
                params[f.name] = trial.suggest_float(f.name, *space, log=f.metadata["log"])
            else:
                params[f.name] = trial.suggest_int(f.name, *space, log=f.metadata["log"])
        return params


def _check_field(strategy: str, f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    where = f"{strategy}.{f.name}"
    kind = str(f.type)  # annotations are strings here ("int | None", "float", "str")
    if value is None:
        if "None" in kind:
            return
        raise ConfigError(f"{where} must be set")
    if "bool" in kind:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return
    if m.get("choices") is not None:
        if value not in m["choices"]:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, m['choices']))}; got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int if "float" not in kind else (int, float)):
        raise ConfigError(f"{where} must be {'a number' if 'float' in kind else 'an integer'}, got {value!r}")
    low, high = m.get("low"), m.get("high")
    too_low = low is not None and (value <= low if m["open_low"] else value < low)
    too_high = high is not None and (value >= high if m["open_high"] else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{'(' if m['open_low'] else '['}{low}"
        hi = "inf" if high is None else f"{high}{')' if m['open_high'] else ']'}"
        raise ConfigError(f"{where} must be in {lo}, {hi}; got {value!r}")


_REGISTRY: dict[str, type[Strategy]] = {}


def register(name: str):
    """Class decorator: make a strategy available by ``name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def strategy_names() -> list[str]:
    _load_builtin()
    return list(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def make_strategy(name: str, **params: Any) -> Strategy:
    cls = strategy_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise ConfigError(
            f"{name} has no hyper-parameter {', '.join(sorted(unknown))}; it has: {', '.join(sorted(known))}"
        )
    return cls(**params)


def _load_builtin() -> None:
    import allocbench.strategies  # noqa: F401  (registers the built-in strategies)


def guard_rounds(strategy: str, rounds: int, max_rounds: int, kept: int, needed: int) -> None:
    """Stop a refilling strategy after ``max_rounds`` generation rounds (0 = unbounded), as
    verl's ``max_num_gen_batches`` does."""
    if max_rounds > 0 and rounds >= max_rounds:
        raise DataTooHard(
            f"{strategy}: {rounds} generation rounds filled only {kept} of {needed} train-batch "
            f"groups (max_num_gen_batches={max_rounds}); the data may be too hard or too easy "
            f"for this filter, or set max_num_gen_batches=0 for no limit"
        )


def fill_with_filter(ctx: StepContext, strategy: str, gen_batch_size: int, max_rounds: int,
                     keep: Callable[[Outcome], bool]) -> list[Outcome]:
    """Dynamic sampling: rounds of ``gen_batch_size`` fresh prompts x n rollouts, keeping the
    groups ``keep`` accepts, until B are kept (the surplus is cut); ``guard_rounds`` stops it."""
    kept: list[Outcome] = []
    rounds = 0
    while len(kept) < ctx.train_batch:
        guard_rounds(strategy, rounds, max_rounds, len(kept), ctx.train_batch)
        rounds += 1
        prompts = ctx.candidates.take(gen_batch_size)
        outcomes = ctx.sampler.sample({int(i): ctx.group_size for i in prompts})
        kept += [o for o in outcomes.values() if keep(o)]
    return kept[: ctx.train_batch]


def sample_until(ctx: StepContext, prompts: list[int], per_round: int, cap: int,
                 finished: Callable[[Outcome], bool]) -> dict[int, Outcome]:
    """Adaptive sampling: each round (one sampler call) gives every still-active prompt up to
    ``per_round`` more rollouts; a prompt leaves once ``finished(its rollouts)`` or it holds
    ``cap``. Returns every prompt's rollouts."""
    pools: dict[int, Outcome] = {}
    active = list(prompts)
    while active:
        drawn = np.array([pools[i].n if i in pools else 0 for i in active])
        outcomes = ctx.sampler.sample(dict(zip(active, np.minimum(per_round, cap - drawn).tolist())))
        for i in active:
            pools[i] = pools[i].merge(outcomes[i]) if i in pools else outcomes[i]
        active = [i for i in active if pools[i].n < cap and not finished(pools[i])]
    return pools
