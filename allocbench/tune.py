"""``allocbench tune``: an Optuna study over the search space a strategy declares.

Objective (one number per trial, the mean over the study's seeds 0..K-1, every trial on the
same seeds):

- ``rollouts`` (default, minimised): rollouts a run spends until its evaluated accuracy first
  reaches the target. A run stops as soon as it does. Each run may spend at most
  ``CAP_FACTOR`` x R rollouts (R = grpo's rollouts over the same steps) and ``steps`` steps; a
  run that never reaches the target scores ``cap x (2 - progress)``, where ``progress`` in
  [0, 1) is how far its best accuracy got from the before-training accuracy to the target.
  So every miss scores worse than every hit (a hit costs at most ``cap``), and of two misses
  the one that came closer scores better. The target defaults to grpo's peak seed-mean
  accuracy with the same scenario, steps and seeds; it is computed once, when the study is
  created, and kept in the study's user attributes, so resumed studies and other workers use
  the same one.
- ``auc`` (maximised): the area under accuracy vs cumulative rollouts from 0 to R divided by
  R, i.e. the mean accuracy over an equal budget of R rollouts. Each run stops before it would
  spend more than R (and after at most ``AUC_STEP_FACTOR`` x steps); the curve is linear
  between evaluations and held flat after the last one.

Note that the seed mean of per-seed rollouts-to-target differs slightly from the
rollouts-to-target of the seed-mean curve that ``allocbench compare`` reports; it is used here
because every seed can stop, be penalised and be pruned on its own.

Pruning. Every run reports, at checkpoints ``j x cap / GRID`` rollouts (``j x R / GRID`` for
auc), the mean over the seeds run so far of its *progress* at that spend (rollouts: the
share of the way from the start accuracy to the target that its best accuracy covered;
auc: the partial area / R). Trial step ``k x (GRID + 1) + j`` carries, for seed number k,
``K - k - progress`` (rollouts) or ``k + progress`` (auc), so the value only improves along
the steps: Optuna's MedianPruner, which judges a trial by its best value so far, then compares
trials at equal spend of the same seed, and a trial whose progress is below the median of the
finished trials' is stopped.

Storage. Any Optuna RDB URL; default ``sqlite:///results/tune/<study>.db``. Workers started
with the same settings and study name share one study: ``--trials N`` runs trials until the
study holds N finished (complete or pruned) ones, counting those of all workers, so rerunning
the same command resumes an interrupted study. A trial cut short by Ctrl-C / SIGTERM is run
again with the same parameters on resume; one lost to a killed process is failed after a
heartbeat grace period and run again by the next worker.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from allocbench.errors import AllocbenchError, ConfigError, DataTooHard
from allocbench.runner import RunConfig, run
from allocbench.schema import writable, write_atomic
from allocbench.strategy import Strategy, make_strategy, strategy_class

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
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"--target must be in (0, 1], got {self.target}")
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


# ---------------------------------------------------------------------------------------------
# one run scored against a target


class _Reached(Exception):
    """Raised from on_step to end a run that reached its target."""


@dataclass
class Reference:
    """grpo's runs on the seeds a score is taken on."""

    target: float  # the target accuracy (given, or grpo's peak seed-mean accuracy)
    rollouts: float  # R: grpo's rollouts over the steps (seed mean)
    start_acc: dict  # seed -> accuracy before training (the same for every strategy)

    def to_json(self) -> dict:
        return {"target": self.target, "rollouts": self.rollouts,
                "start_acc": {str(k): v for k, v in self.start_acc.items()}}

    @classmethod
    def from_json(cls, d: dict) -> Reference:
        return cls(d["target"], d["rollouts"], {int(k): v for k, v in d["start_acc"].items()})


def reference(config: TuneConfig, seeds: list[int], scenario: str | None = None) -> Reference:
    from allocbench.metrics import default_target

    steps = config.resolved_steps(scenario)
    runs = [run(config.make_env(seed, scenario), make_strategy(REFERENCE),
                RunConfig(steps=steps, seed=seed, eval_every=config.eval_every,
                          train_batch=config.train_batch, group_size=config.group_size))
            for seed in seeds]
    table = pd.concat(runs, ignore_index=True)
    target = config.target if config.target is not None else default_target(table, REFERENCE)
    start = {int(r["seed"].iloc[0]): float(r["eval_acc"].iloc[0]) for r in runs}
    return Reference(float(target), float(np.mean([r["cum_rollouts"].iloc[-1] for r in runs])), start)


@dataclass
class SeedResult:
    seed: int
    value: float  # the objective of this run
    reached: bool  # rollouts objective: reached the target
    rollouts: int  # rollouts spent when the run ended
    steps: int  # steps it ran
    progress: np.ndarray  # GRID + 1 checkpoint progress values in [0, 1]
    problem: str | None = None


class SeedRun:
    """Follows one run's evaluations against the target and the rollouts checkpoints."""

    def __init__(self, config: TuneConfig, ref: Reference, seed: int,
                 on_checkpoint: Callable[[SeedRun], None] | None = None):
        self.seed = seed
        self.objective = config.objective
        self.target = ref.target
        self.start = ref.start_acc[seed]
        self.span = (CAP_FACTOR if config.minimise else 1.0) * ref.rollouts
        self.cap = self.span
        self.checkpoints = np.linspace(0, self.span, GRID + 1)
        self.xs, self.ys = [0.0], [self.start]
        self.progress: list[float] = []
        self.rollouts = 0
        self.steps = 0
        self.reached_at: float | None = None
        self.on_checkpoint = on_checkpoint

    def on_step(self, row: dict) -> None:
        self.rollouts, self.steps = int(row["cum_rollouts"]), int(row["step"])
        acc = row["eval_acc"]
        if acc != acc:  # not an evaluation step
            return
        self.xs.append(float(row["cum_rollouts"]))
        self.ys.append(float(acc))
        before = len(self.progress)
        while len(self.progress) <= GRID and self.checkpoints[len(self.progress)] <= self.xs[-1]:
            self.progress.append(self.progress_at(self.checkpoints[len(self.progress)]))
        if self.objective == "rollouts" and acc >= self.target:
            self.reached_at = float(row["cum_rollouts"])
            raise _Reached
        if len(self.progress) > before and self.on_checkpoint is not None:
            self.on_checkpoint(self)

    def progress_at(self, x: float) -> float:
        xs, ys = np.asarray(self.xs), np.asarray(self.ys)
        if self.objective == "rollouts":
            if self.target <= self.start:
                return 1.0
            best = ys[xs <= x].max()
            return float(np.clip((best - self.start) / (self.target - self.start), 0.0, 1.0))
        return _area(xs, ys, x) / self.span

    def finish(self, problem: str | None = None) -> SeedResult:
        while len(self.progress) <= GRID:  # the curve is flat after the run ended
            self.progress.append(self.progress_at(self.checkpoints[len(self.progress)]))
        if self.objective == "auc":
            value, reached = self.progress[-1], False
        elif self.reached_at is not None:
            value, reached = self.reached_at, True
        else:
            value, reached = self.cap * (2.0 - self.progress_at(math.inf)), False
        return SeedResult(self.seed, float(value), reached, self.rollouts, self.steps,
                          np.array(self.progress), problem)


def _area(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """Area under the piecewise-linear curve (xs, ys) from 0 to x, flat after the last point."""
    if x <= 0:
        return 0.0
    inside = xs < x
    px = np.append(xs[inside], x)
    py = np.append(ys[inside], np.interp(x, xs, ys))
    return float(np.sum((py[1:] + py[:-1]) / 2 * np.diff(px)))


def run_seed(config: TuneConfig, strategy: Strategy, seed: int, ref: Reference,
             scenario: str | None = None, on_checkpoint=None) -> SeedResult:
    """One run of ``strategy`` scored by ``config.objective`` against ``ref``."""
    tracker = SeedRun(config, ref, seed, on_checkpoint)
    steps = config.resolved_steps(scenario)
    if config.minimise:
        cfg = RunConfig(steps=steps, budget=int(tracker.cap))
    else:
        cfg = RunConfig(steps=AUC_STEP_FACTOR * steps, budget=int(ref.rollouts))
    cfg = dataclasses.replace(cfg, seed=seed, eval_every=config.eval_every,
                              train_batch=config.train_batch, group_size=config.group_size)
    problem = None
    try:
        run(config.make_env(seed, scenario), strategy, cfg, on_step=tracker.on_step)
        if config.minimise and tracker.steps < cfg.steps:
            problem = f"spent its budget of {cfg.budget:,} rollouts at step {tracker.steps}"
    except _Reached:
        pass
    except DataTooHard as e:  # the run stopped; it is scored on what it reached
        problem = str(e)
    return tracker.finish(problem)


def score(config: TuneConfig, strategy: Strategy, seeds: list[int], ref: Reference,
          scenario: str | None = None) -> list[SeedResult]:
    return [run_seed(config, strategy, seed, ref, scenario) for seed in seeds]


# ---------------------------------------------------------------------------------------------
# the study


class Objective:
    """Optuna objective: the strategy's search space, scored over the study's seeds."""

    def __init__(self, config: TuneConfig, ref: Reference):
        self.config, self.ref = config, ref
        self.cls = strategy_class(config.strategy)

    def __call__(self, trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            return self._score(trial)
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the trial is failed and re-run on resume
            trial.set_user_attr("interrupted", True)
            raise
        except AllocbenchError as e:  # the trial fails, the study goes on
            trial.set_user_attr("error", str(e))
            raise

    def _score(self, trial) -> float:
        import optuna

        params = self.cls.search_space(trial)
        strategy = make_strategy(self.config.strategy, **params)
        K = self.config.seeds
        curves: list[np.ndarray] = []  # progress at the checkpoints of the seeds run so far
        results: list[SeedResult] = []
        for k, seed in enumerate(range(K)):
            done = [0]  # checkpoints of this seed already reported

            def report(tracker: SeedRun | SeedResult, final: bool = False) -> None:
                _Interrupts.check()  # a safe point: no storage write is under way
                progress = tracker.progress
                for j in range(done[0], len(progress)):
                    mean = (sum(c[j] for c in curves) + progress[j]) / (k + 1)
                    trial.report(K - k - mean if self.config.minimise else k + mean, k * (GRID + 1) + j)
                if not final and len(progress) > done[0] and trial.should_prune():
                    trial.set_user_attr("pruned_at", f"seed {seed}, {tracker.rollouts} rollouts")
                    raise optuna.TrialPruned()
                done[0] = len(progress)

            result = run_seed(self.config, strategy, seed, self.ref, on_checkpoint=report)
            report(result, final=True)
            curves.append(result.progress)
            results.append(result)
        value = float(np.mean([r.value for r in results]))
        trial.set_user_attr("seed_values", [r.value for r in results])
        trial.set_user_attr("seeds_reached", sum(r.reached for r in results))
        trial.set_user_attr("rollouts_spent", float(np.mean([r.rollouts for r in results])))
        problems = [f"seed {r.seed}: {r.problem}" for r in results if r.problem]
        if problems:
            trial.set_user_attr("problems", "; ".join(problems))
        return value


def fmt(value: float, config: TuneConfig) -> str:
    return f"{value:,.0f}" if config.minimise else f"{value:.4f}"


def seed_range(first: int, end: int) -> str:
    return f"seed {first}" if end - first == 1 else f"seeds {first}-{end - 1}"


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def redact(url: str) -> str:
    """The URL with its password hidden."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_storage(study_name: str) -> str:
    DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_DIR / f'{study_name}.db').resolve()}"


def open_storage(url: str, attempts: int = 3):
    """An Optuna RDB storage for ``url``, or a one-line ConfigError saying why not.

    SQLite: every transaction is ``BEGIN IMMEDIATE``, so concurrent writers (worker processes,
    Optuna's heartbeat thread) wait for the lock (up to 120 s) instead of failing at once with
    "database is locked", as SQLite's deferred transactions do when two of them upgrade; the
    file is put in WAL mode with synchronous=NORMAL (3x faster commits, still crash-safe; the
    file must be on a local disk, as SQLite's locking needs anyway).
    """
    import optuna

    _quiet_optuna()
    sqlite = url.startswith("sqlite")
    engine_kwargs: dict = {}
    if sqlite:
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
        _sqlite_wal(url)
    elif url.startswith(("postgresql", "postgres")):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
        retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)}
    else:
        retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(
                _with_driver(url), engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                **retry)
            break
        except ImportError as e:  # optuna re-raises the driver's ModuleNotFoundError as ImportError
            missing = getattr(e.__cause__, "name", None) or getattr(e, "name", None) or "its database driver"
            hint = " (pip install psycopg2-binary)" if "psycopg" in str(missing) else ""
            raise ConfigError(f"cannot open study storage {redact(url)}: {missing} is not installed{hint}") from None
        except Exception as e:  # sqlalchemy's errors: unreachable server, bad URL, bad path, auth
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()
            reason = reason[0] if reason else "unknown error"
            # two workers creating the tables of a new storage at once: the loser retries
            if attempt + 1 < attempts and (re.search(r"exist|duplicate|locked|unique", reason, re.I) or "Integrity" in type(e).__name__):
                time.sleep(0.5 + attempt)
                continue
            raise ConfigError(f"cannot open study storage {redact(url)}: {type(e).__name__}: {reason}") from None
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "connect", lambda dbapi, record: dbapi.execute("PRAGMA synchronous=NORMAL"))
        event.listen(storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        storage.engine.dispose()  # the connections opened so far lack the pragma
    return storage


def _sqlite_wal(url: str) -> None:
    """Switch the SQLite file to WAL mode (kept in the file); a failure (no such folder, another
    worker holding it) is left to the storage to report or is harmless."""
    import sqlite3

    from sqlalchemy.engine import make_url

    try:
        path = make_url(url).database
        if path and path != ":memory:" and Path(path).parent.is_dir():
            with sqlite3.connect(path, timeout=10) as db:
                db.execute("PRAGMA journal_mode=WAL")
            db.close()
    except Exception:
        pass


def _with_driver(url: str) -> str:
    """``postgres(ql)://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 takes
    psycopg (3) by default, 2.0 psycopg2; either works."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgres", "postgresql"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2{sep}{rest}"
    return f"postgresql{sep}{rest}"


def _pruner(name: str):
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=GRID // 6)
    raise ConfigError(f"--pruner must be median or none, got {name!r}")


def _sampler(seed: int | None):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def open_study(config: TuneConfig, storage: str, study_name: str, *, pruner: str = "median",
               sampler_seed: int | None = None, progress: Callable[[str], None] | None = None):
    """Create or load the study; on creation compute the reference (target) and enqueue the
    strategy's defaults; on load check that this config is the study's."""
    import optuna

    check_study_name(study_name)
    space = searched_fields(config.strategy)
    if not space:
        raise ConfigError(f"{config.strategy} declares no search space; nothing to tune")
    settings = config.settings()  # also checks the scenario, overrides and env
    study = optuna.create_study(
        storage=open_storage(storage), study_name=study_name, load_if_exists=True,
        direction="minimize" if config.minimise else "maximize",
        sampler=_sampler(sampler_seed), pruner=_pruner(pruner))
    attrs = study.user_attrs
    deadline = time.monotonic() + 30
    while "settings" not in attrs and study.trials and time.monotonic() < deadline:
        time.sleep(0.5)  # another worker is finishing the study's creation; its settings come next
        attrs = study.user_attrs
    if "settings" in attrs:
        check_settings(attrs, settings, config.target, study_name)
        return study
    if study.trials:
        raise ConfigError(f"study {study_name!r} has trials but no allocbench settings; "
                          f"it was not made by allocbench tune, choose another --study")
    if progress:
        progress(f"computing the reference: {REFERENCE} on {config.scenario}, {seed_range(0, config.seeds)}")
    ref = reference(config, list(range(config.seeds)))
    study.set_user_attr("reference", ref.to_json())
    study.set_user_attr("target_source", "given" if config.target is not None else f"{REFERENCE} peak")
    study.set_user_attr("settings", settings)  # last: a study with settings is complete
    study.enqueue_trial(default_params(config), user_attrs={"defaults": True}, skip_if_exists=True)
    return study


def check_study_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"--study must be letters, digits, '.', '_' or '-', got {name!r}")


def check_settings(attrs: dict, settings: dict, target: float | None, study_name: str) -> None:
    stored = attrs["settings"]
    diff = [f"{k}={stored.get(k)!r} (asked {settings.get(k)!r})"
            for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k)]
    kept = attrs["reference"]["target"]
    if target is not None and abs(target - kept) > 1e-12:
        diff.append(f"target={kept!r} (asked {target!r})")
    if diff:
        raise ConfigError(f"study {study_name!r} was made with other settings: {', '.join(diff)}; "
                          f"use the same settings or another --study")


def searched_fields(strategy: str) -> list[str]:
    return [f.name for f in dataclasses.fields(strategy_class(strategy)) if f.metadata.get("search") is not None]


def default_params(config: TuneConfig) -> dict:
    """The strategy's defaults as a point of its search space (defaults that depend on B or n
    resolved for this scenario; ones outside the range are left to the sampler)."""
    env = config.make_env(0)
    resolved = make_strategy(config.strategy).resolved(config.train_batch or env.train_batch,
                                                       config.group_size or env.group_size)
    out = {}
    for f in dataclasses.fields(strategy_class(config.strategy)):
        space, value = f.metadata.get("search"), resolved.get(f.name)
        if space is None or value is None:
            continue
        if isinstance(space[0], (str, bool)) or f.metadata.get("choices") is not None:
            if value in space:
                out[f.name] = value
        elif space[0] <= value <= space[1]:
            out[f.name] = value
    return out


def reference_of(study) -> Reference:
    return Reference.from_json(study.user_attrs["reference"])


def config_of(study) -> TuneConfig:
    s = dict(study.user_attrs["settings"])
    s["overrides"] = tuple((k, v) for k, v in s["overrides"])
    return TuneConfig(**s, target=study.user_attrs["reference"]["target"])


def requeue_interrupted(study) -> int:
    """Enqueue again the parameters of trials cut short by Ctrl-C / SIGTERM."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            n += 1
    return n


def counts(study) -> dict:
    from optuna.trial import TrialState

    out = {s: 0 for s in ("complete", "pruned", "failed", "running", "waiting")}
    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    for t in study.get_trials(deepcopy=False):
        out[names[t.state]] += 1
    return out


def finished(study) -> int:
    c = counts(study)
    return c["complete"] + c["pruned"]


def optimize(study, config: TuneConfig, trials: int, *, timeout: float | None = None,
             log: Callable[[str], None] | None = None) -> None:
    """Run trials in this process until the study holds ``trials`` finished ones."""
    import optuna
    from optuna.trial import TrialState

    remaining = trials - finished(study)
    if remaining <= 0:
        return
    objective = Objective(config, reference_of(study))

    def say(study, trial):
        if log is None:
            return
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            log(f"trial {trial.number}: {fmt(trial.value, config)} (best {fmt(best.value, config)}, trial {best.number})")
        elif trial.state == TrialState.PRUNED:
            log(f"trial {trial.number}: pruned at {trial.user_attrs.get('pruned_at', '?')}")
        elif trial.state == TrialState.FAIL:
            why = "interrupted" if trial.user_attrs.get("interrupted") else trial.user_attrs.get("error", "?")
            log(f"trial {trial.number}: failed ({why})")

    stop = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    _Interrupts.deferring = True
    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[stop, say, _Interrupts.check],
                       catch=(AllocbenchError,), gc_after_trial=False)
    finally:
        _Interrupts.deferring = False
    _Interrupts.check()


class _Interrupts:
    """Ctrl-C and SIGTERM end a study cleanly. Inside ``optimize`` the signal is held until a
    safe point (the next progress report of a run, or the end of a trial), so it never lands
    while Optuna writes a trial to the storage, which would leave a traceback instead of a
    stopped, resumable study; a second signal is not held."""

    deferring = False
    pending = False

    @classmethod
    def handler(cls, signum, frame):
        if cls.deferring and not cls.pending:
            cls.pending = True
            return
        raise KeyboardInterrupt

    @classmethod
    def check(cls, *_):
        if cls.pending:
            cls.pending = False
            raise KeyboardInterrupt


def _install_interrupts() -> dict:
    """Route SIGINT and SIGTERM (a scheduler, ``kill``) through ``_Interrupts``; returns the
    old handlers."""
    try:
        return {sig: signal.signal(sig, _Interrupts.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        return {}


def _worker(config: TuneConfig, storage: str, study_name: str, trials: int, timeout, pruner: str,
            sampler_seed, quiet: bool) -> None:
    """One local worker process of ``--n-jobs``."""
    _install_interrupts()
    try:
        study = open_study(config, storage, study_name, pruner=pruner, sampler_seed=sampler_seed)
        optimize(study, config, trials, timeout=timeout, log=None if quiet else _log)
    except KeyboardInterrupt:
        sys.exit(130)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_workers(config: TuneConfig, storage: str, study_name: str, trials: int, n_jobs: int, *,
                timeout=None, pruner="median", sampler_seed=None, quiet=False) -> None:
    """``n_jobs`` worker processes on this machine sharing the study (which must exist)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config, storage, study_name, trials, timeout, pruner,
                                               None if sampler_seed is None else sampler_seed + i, quiet))
             for i in range(n_jobs)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # a Ctrl-C reached them too; a SIGTERM to this process did not: pass it on. Either way
        # each marks its running trial as interrupted (re-run on resume) and exits
        for p in procs:
            p.join(timeout=5)
            if p.exitcode is None:
                p.terminate()
        for p in procs:
            p.join(timeout=30)
        raise
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if 130 in bad:
        raise KeyboardInterrupt
    if bad:
        raise AllocbenchError(f"{len(bad)} of {n_jobs} worker processes failed (exit {bad[0]}); see above")


# ---------------------------------------------------------------------------------------------
# results


def best_toml(study, config: TuneConfig, storage: str) -> str:
    best = study.best_trial
    ref = reference_of(study)
    what = (f"mean rollouts to eval_acc >= {ref.target:.4f}" if config.minimise
            else f"mean accuracy over the first {ref.rollouts:,.0f} rollouts (AUC / R)")
    lines = [
        f"# allocbench tune: study {study.study_name!r} ({redact(storage)}), best of "
        f"{finished(study)} finished trials: trial {best.number}",
        f"# {config.strategy} on {config.env} scenario {config.scenario!r}, {config.resolved_steps()} steps, "
        f"{seed_range(0, config.seeds)}" + (f", overrides {dict(config.overrides)}" if config.overrides else ""),
        f"# objective {config.objective}: {what} = {fmt(best.value, config)}",
        f"# use: allocbench compare --config THIS_FILE --strategies grpo,{config.strategy} --scenario {config.scenario}",
        f"[strategies.{config.strategy}]",
    ]
    lines += [f"{name} = {_toml_value(value)}" for name, value in best.params.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    return json.dumps(str(v))


def trials_table(study) -> pd.DataFrame:
    df = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    if "duration" in df:
        df["duration"] = df["duration"].dt.total_seconds()
        df = df.rename(columns={"duration": "duration_s"})
    return df


def figures(study, config: TuneConfig) -> tuple[dict[str, bytes], list[str]]:
    """PNG bytes by file name, and notes on figures Optuna could not draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = counts(study)["complete"]
    space = searched_fields(config.strategy)
    wanted = {"optimization_history.png": (1, lambda: ovm.plot_optimization_history(study)),
              "param_importances.png": (3, lambda: ovm.plot_param_importances(study))}
    if {"pilot_fraction", "pilot_n"} <= set(space):
        wanted["contour_pilot_fraction_pilot_n.png"] = (
            3, lambda: ovm.plot_contour(study, params=["pilot_fraction", "pilot_n"]))
    pngs, notes = {}, []
    for name, (needs, draw) in wanted.items():
        if complete < needs:
            notes.append(f"skipped {name}: needs {needs} completed trials, the study has {complete}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = (np.ravel(ax)[0] if isinstance(ax, np.ndarray) else ax).figure
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
            plt.close(fig)
            pngs[name] = buf.getvalue()
        except Exception as e:  # Optuna refuses some studies (e.g. one value everywhere)
            notes.append(f"skipped {name}: Optuna could not draw it ({type(e).__name__}: {e})")
            plt.close("all")
    return pngs, notes


def robustness(study, config: TuneConfig, scenarios: list[str],
               log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The best parameters and the strategy's defaults on the tuning scenario and ``scenarios``
    with fresh seeds K..2K-1; each scenario's target is grpo's peak there on those seeds (or
    the given target). gain: how much better tuned is than defaults (rollouts: default / tuned,
    a speed-up; auc: tuned / default); gain_gap: the tuning scenario's gain minus this one's."""
    K = config.seeds
    seeds = list(range(K, 2 * K))
    given = study.user_attrs.get("target_source") == "given"
    base = dataclasses.replace(config, target=config.target if given else None)
    tuned = make_strategy(config.strategy, **study.best_trial.params)
    default = make_strategy(config.strategy)
    rows = []
    for scenario in [config.scenario] + [s for s in scenarios if s != config.scenario]:
        if log:
            log(f"robustness: {scenario}, {seed_range(K, 2 * K)}")
        ref = reference(base, seeds, scenario)
        t = score(config, tuned, seeds, ref, scenario)
        d = score(config, default, seeds, ref, scenario)
        tv, dv = np.mean([r.value for r in t]), np.mean([r.value for r in d])
        rows.append({"scenario": scenario, "seeds": f"{seeds[0]}-{seeds[-1]}", "target": ref.target,
                     "grpo_rollouts": ref.rollouts, "tuned": tv, "default": dv,
                     "tuned_seeds_reached": sum(r.reached for r in t),
                     "default_seeds_reached": sum(r.reached for r in d),
                     "gain": dv / tv if config.minimise else tv / dv})
    out = pd.DataFrame(rows)
    out["gain_gap"] = out["gain"].iloc[0] - out["gain"]
    out.insert(1, "role", ["tuning"] + ["held-out"] * (len(out) - 1))
    return out


def output_names(config: TuneConfig, with_robustness: bool) -> list[str]:
    names = ["best.toml", "trials.csv", "optimization_history.png", "param_importances.png"]
    if {"pilot_fraction", "pilot_n"} <= set(searched_fields(config.strategy)):
        names.append("contour_pilot_fraction_pilot_n.png")
    return names + (["robustness.csv"] if with_robustness else [])


def write_outputs(out: Path, files: dict[str, Callable[[str], None]]) -> list[Path]:
    out.mkdir(exist_ok=True)
    written = []
    for name, write in files.items():
        write_atomic(out / name, write)
        written.append(out / name)
    return written


def summary(study, config: TuneConfig) -> str:
    c = counts(study)
    lines = [f"study {study.study_name}: {c['complete']} complete, {c['pruned']} pruned, "
             f"{c['failed']} failed" + (f", {c['running']} running" if c["running"] else "")
             + (f", {c['waiting']} waiting" if c["waiting"] else "")]
    ref = reference_of(study)
    if c["complete"]:
        best = study.best_trial
        defaults = [t for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("defaults") and t.value is not None]
        unit = f"rollouts to {ref.target:.4f}" if config.minimise else "AUC / R"
        lines.append(f"best trial {best.number}: {unit} {fmt(best.value, config)}"
                     + (f" (defaults: {fmt(defaults[0].value, config)}; grpo spends {ref.rollouts:,.0f} "
                        f"over the run)" if defaults else ""))
        lines.append("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in best.params.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(sub) -> None:
    """Register ``allocbench tune`` on the CLI's subparsers."""
    p = sub.add_parser(
        "tune", help="tune a strategy's hyper-parameters with Optuna (resumable, multi-worker)",
        description="Run an Optuna study over the search space the strategy declares. Objective: "
        "rollouts to the target accuracy (mean over seeds; lower is better) or --objective auc. "
        "Rerun the same command to resume; start it on several machines with one PostgreSQL "
        "--storage URL to share a study. Writes DIR/best.toml (for `allocbench compare --config`), "
        "DIR/trials.csv and DIR/*.png, DIR = results/tune/STUDY unless --out.")
    p.add_argument("--strategy", required=True, help="strategy to tune (see `allocbench strategies`)")
    p.add_argument("--scenario", default="default", help="scenario to tune on; default: default")
    p.add_argument("--trials", type=int, default=50,
                   help="finished (complete or pruned) trials the study should hold, all workers "
                   "together; default: 50")
    p.add_argument("--seeds", type=int, default=3, help="seeds per trial, 0..K-1; default: 3")
    p.add_argument("--steps", type=int, default=None, help="training steps per run; default: the scenario's")
    p.add_argument("--target", type=float, default=None,
                   help="target accuracy; default: grpo's peak seed-mean accuracy (same steps, seeds)")
    p.add_argument("--objective", choices=OBJECTIVES, default="rollouts",
                   help="rollouts: mean rollouts to the target, minimised (default); auc: mean "
                   "accuracy over grpo's rollout budget, maximised")
    p.add_argument("--study", default=None, help="study name; default: STRATEGY-SCENARIO-OBJECTIVE")
    p.add_argument("--storage", default=None,
                   help="Optuna RDB URL, e.g. postgresql://user:pass@host/db; default: "
                   "sqlite:///results/tune/STUDY.db")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes on this machine; default: 1")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--pruner", choices=("median", "none"), default="median", help="default: median")
    p.add_argument("--sampler-seed", type=int, default=None, help="seed of the TPE sampler")
    p.add_argument("--eval-scenarios", default="",
                   help="comma-separated scenarios: rerun the best parameters and the defaults there "
                   "on fresh seeds K..2K-1 and report the generalisation gap")
    p.add_argument("--eval-every", type=int, default=10, help="steps between evaluations; default: 10")
    p.add_argument("--train-batch", type=int, default=None, help="prompts per step B; default: the scenario's")
    p.add_argument("--group-size", type=int, default=None, help="rollouts per prompt n; default: the scenario's")
    p.add_argument("--scenario-set", dest="overrides", action="append", default=[], metavar="PARAM=VALUE",
                   help="override a scenario parameter, e.g. pool_size=2000 (repeatable)")
    p.add_argument("--env", default="sim", help="environment: sim (default) or real")
    p.add_argument("--out", type=Path, default=None, help="output folder; default: results/tune/STUDY")
    p.add_argument("--worker", action="store_true",
                   help="only run trials; write no outputs (for extra workers of a shared study)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_tune)


def _overrides(items: list[str]) -> tuple:
    from allocbench.cli import parse_value

    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--scenario-set expects PARAM=VALUE, got {item!r}")
        out.append((key.strip(), parse_value(value)))
    return tuple(out)


def cmd_tune(args) -> int:
    previous = _install_interrupts()
    try:
        return _cmd_tune(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cmd_tune(args) -> int:
    config = TuneConfig(strategy=args.strategy, scenario=args.scenario, seeds=args.seeds, steps=args.steps,
                        objective=args.objective, target=args.target, env=args.env,
                        eval_every=args.eval_every, train_batch=args.train_batch,
                        group_size=args.group_size, overrides=_overrides(args.overrides))
    if args.trials < 0:
        raise ConfigError(f"--trials must be >= 0, got {args.trials}")
    if args.n_jobs <= 0:
        raise ConfigError(f"--n-jobs must be positive, got {args.n_jobs}")
    study_name = args.study or f"{config.strategy}-{config.scenario}-{config.objective}"
    check_study_name(study_name)
    eval_scenarios = [s.strip() for s in args.eval_scenarios.split(",") if s.strip()]
    for s in eval_scenarios:
        config.make_env(0, s)  # an unknown scenario fails now, not after the study
    out = args.out if args.out is not None else DEFAULT_DIR / study_name
    if not args.worker:
        if args.out is None:
            out.parent.mkdir(parents=True, exist_ok=True)
        writable(out, output_names(config, True), args.force)
    storage = args.storage or default_storage(study_name)
    log = (lambda msg: None) if args.quiet else _log

    study = None
    start = time.perf_counter()
    try:
        study = open_study(config, storage, study_name, pruner=args.pruner,
                           sampler_seed=args.sampler_seed, progress=log)
        config = dataclasses.replace(config, target=study.user_attrs["reference"]["target"])
        ref = reference_of(study)
        log(f"study {study_name} on {redact(storage)}: target accuracy {ref.target:.4f} "
            f"({study.user_attrs.get('target_source')}), grpo spends {ref.rollouts:,.0f} rollouts; "
            f"{finished(study)} of {args.trials} trials finished")
        requeued = requeue_interrupted(study)
        if requeued:
            log(f"re-running {requeued} interrupted trial(s)")
        if args.n_jobs == 1:
            optimize(study, config, args.trials, timeout=args.timeout, log=None if args.quiet else log)
        else:
            run_workers(config, storage, study_name, args.trials, args.n_jobs, timeout=args.timeout,
                        pruner=args.pruner, sampler_seed=args.sampler_seed, quiet=args.quiet)
    except KeyboardInterrupt:
        kept = f"{finished(study)} finished trials are kept in {redact(storage)}" if study else "nothing was run"
        print(f"allocbench: interrupted; {kept}; run the same command to resume", file=sys.stderr)
        return 130
    print(summary(study, config) + f"\n({time.perf_counter() - start:,.1f} s)")
    if args.worker:
        return 0
    if not counts(study)["complete"]:
        raise AllocbenchError(f"study {study_name} has no completed trial; nothing to write")

    files: dict[str, Callable[[str], None]] = {}
    toml = best_toml(study, config, storage)
    files["best.toml"] = lambda tmp: Path(tmp).write_text(toml)
    table = trials_table(study)
    files["trials.csv"] = lambda tmp: table.to_csv(tmp, index=False)
    pngs, notes = figures(study, config)
    for name, data in pngs.items():
        files[name] = lambda tmp, data=data: Path(tmp).write_bytes(data)
    for note in notes:
        print(f"note: {note}")
    if eval_scenarios:
        rob = robustness(study, config, eval_scenarios, log=log)
        files["robustness.csv"] = lambda tmp: rob.to_csv(tmp, index=False)
        print(rob.to_string(index=False, float_format=lambda v: f"{v:,.4g}"))
    written = write_outputs(out, files)
    stale = [out / n for n in output_names(config, True) if n not in files and (out / n).exists()]
    for path in stale:  # --force: a figure not drawn this time must not survive from before
        path.unlink()
    print(f"wrote {', '.join(str(p) for p in written)}"
          + (f"; removed the earlier {', '.join(p.name for p in stale)}" if stale else ""))
    return 0
