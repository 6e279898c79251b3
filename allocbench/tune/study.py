"""The study: create or load it (the reference, the settings every worker must share, the
defaults as trial 0), run trials in this process or in local worker processes, re-run
interrupted trials, count trials.

``optimize(study, config, N)`` runs trials until the study holds N finished (complete or
pruned) ones, counting those of all workers, so rerunning the same command resumes an
interrupted study. A trial cut short by Ctrl-C / SIGTERM is run again with the same
parameters on resume.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import re
import sys
import time
from typing import Callable

from allocbench.errors import AllocbenchError, ConfigError
from allocbench.strategy import make_strategy, strategy_class
from allocbench.tune.config import GRID, REFERENCE, TuneConfig, fmt, searched_fields, seed_range
from allocbench.tune.interrupts import Interrupts, deferred_interrupts, install_interrupts
from allocbench.tune.objective import Objective, Reference, reference
from allocbench.tune.storage import open_storage

SETTLE_S = 10.0  # how long a study with trials but no settings is re-read before it is refused


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
    strategy's defaults; on load check that this config is the study's.

    Workers may open a new study at the same moment. The creator stores the settings before it
    enqueues the first trial, so a reader looks at the trials first and the settings second: a
    study that had a trial when it was read has its settings by the time they are read. The
    two are read again (for ``SETTLE_S``) until they agree before a study with trials but no
    settings is refused as not made by allocbench."""
    import optuna

    check_study_name(study_name)
    if not searched_fields(config.strategy):
        raise ConfigError(f"{config.strategy} declares no search space; nothing to tune")
    settings = config.settings()  # also checks the scenario, overrides and env
    study = optuna.create_study(
        storage=open_storage(storage), study_name=study_name, load_if_exists=True,
        direction="minimize" if config.minimise else "maximize",
        sampler=_sampler(sampler_seed), pruner=_pruner(pruner))
    deadline = time.monotonic() + SETTLE_S
    while True:
        has_trials = bool(study.get_trials(deepcopy=False))  # first the trials ...
        attrs = study.user_attrs  # ... then the settings, which are written before any trial
        if "settings" in attrs:
            check_settings(attrs, settings, config.target, study_name)
            return study
        if not has_trials:
            break  # a new study: this worker makes it (others may too, with the same result)
        if time.monotonic() > deadline:
            raise ConfigError(f"study {study_name!r} has trials but no allocbench settings; "
                              f"it was not made by allocbench tune, choose another --study")
        time.sleep(0.2)
    if progress:
        progress(f"computing the reference: {REFERENCE} on {config.scenario}, {seed_range(0, config.seeds)}")
    ref = reference(config, list(range(config.seeds)))
    attrs = study.user_attrs
    if "settings" in attrs:  # another worker made the study meanwhile: its settings hold
        check_settings(attrs, settings, config.target, study_name)
        return study
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
    from optuna.trial import TrialState

    def say(study, trial):
        if log is None:
            return
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            log(f"trial {trial.number}: {fmt(trial.value, config)} (best {fmt(best.value, config)}, trial {best.number})")
        elif trial.state == TrialState.PRUNED:
            log(f"trial {trial.number}: pruned at {trial.user_attrs.get('pruned_at', '?')}")
        elif trial.state == TrialState.FAIL:
            log(failure_line(trial))

    run_trials(study, lambda: Objective(config, reference_of(study)), trials, say, timeout=timeout)


def run_trials(study, make_objective: Callable, trials: int, say: Callable, timeout: float | None = None) -> None:
    """Run ``make_objective()`` in this process until the study holds ``trials`` finished
    (complete or pruned) ones, calling ``say(study, trial)`` after each; a Ctrl-C / SIGTERM is
    held until the trial under way has been stored. The one optimisation loop of tuning and
    calibration."""
    import optuna
    from optuna.trial import TrialState

    remaining = trials - finished(study)
    if remaining <= 0:
        return
    stop = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    with deferred_interrupts():
        study.optimize(make_objective(), n_trials=remaining, timeout=timeout,
                       callbacks=[stop, say, Interrupts.check], catch=(AllocbenchError,), gc_after_trial=False)


def failure_line(trial) -> str:
    why = "interrupted" if trial.user_attrs.get("interrupted") else trial.user_attrs.get("error", "?")
    return f"trial {trial.number}: failed ({why})"


def log_line(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _worker(config: TuneConfig, storage: str, study_name: str, trials: int, timeout, pruner: str,
            sampler_seed, quiet: bool) -> None:
    """One local worker process of ``--n-jobs``."""
    install_interrupts()
    try:
        study = open_study(config, storage, study_name, pruner=pruner, sampler_seed=sampler_seed)
        optimize(study, config, trials, timeout=timeout, log=None if quiet else log_line)
    except KeyboardInterrupt:
        sys.exit(130)


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
