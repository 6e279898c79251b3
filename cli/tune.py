"""``allocbench tune``: the command line of ``allocbench.tune`` (figures from ``analysis``)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable

from allocbench.errors import AllocbenchError, ConfigError
from allocbench.tune import OBJECTIVES  # light: optuna is imported when a study opens


def add_parser(sub) -> None:
    """Register ``allocbench tune`` on the CLI's subparsers."""
    p = sub.add_parser(
        "tune", help="tune a strategy's hyper-parameters with Optuna (resumable, multi-worker)",
        description="Run an Optuna study over the search space the strategy declares. Objective: "
        "rollouts to the target accuracy (mean over seeds; lower is better) or --objective auc. "
        "Rerun the same command to resume or to add trials (it refreshes the study's outputs); "
        "start it on several machines with one PostgreSQL --storage URL to share a study. Writes "
        "DIR/best.toml (for `allocbench compare --config`), DIR/trials.csv and DIR/*.png, "
        "DIR = results/tune/STUDY unless --out.")
    p.add_argument("--strategy", required=True, help="strategy to tune (see `allocbench strategies`)")
    p.add_argument("--scenario", default="default", help="scenario name or TOML file to tune on; default: default")
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
                   help="Optuna RDB URL, e.g. postgresql://user:pass@host/db; default: the SQLite "
                   "file DIR/STUDY.db with --out DIR, else results/tune/STUDY.db")
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
    p.add_argument("--force", action="store_true",
                   help="replace output files of another study (this study's are refreshed without it)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from allocbench.tune import routed_interrupts

    with routed_interrupts():
        return _cmd_tune(args)


def check_outputs(out: Path, names: list[str], study_name: str, storage: str, force: bool) -> None:
    """Outputs in ``out`` may be written: none exists, or they are this study's (same study
    name and storage: a rerun refreshes them), or ``force``."""
    from allocbench import tune
    from allocbench.schema import writable

    try:
        writable(out, names, force or tune.owns_outputs(out, study_name, storage))
    except ConfigError as e:
        owner = tune.outputs_owner(out)
        if owner is None:
            raise
        raise ConfigError(f"{e} (they belong to study {owner[0]!r} in {owner[1]}, not to "
                          f"{study_name!r} in {tune.storage_id(storage)})") from None


def _cmd_tune(args) -> int:
    from allocbench import tune
    from allocbench.config import check_target, parse_assignments
    from allocbench.schema import writable

    check_target(args.target)
    overrides = tuple(parse_assignments(args.overrides, "--scenario-set", "PARAM=VALUE"))
    config = tune.TuneConfig(strategy=args.strategy, scenario=args.scenario, seeds=args.seeds, steps=args.steps,
                             objective=args.objective, target=args.target, env=args.env,
                             eval_every=args.eval_every, train_batch=args.train_batch,
                             group_size=args.group_size, overrides=overrides)
    if args.trials < 0:
        raise ConfigError(f"--trials must be >= 0, got {args.trials}")
    if args.n_jobs <= 0:
        raise ConfigError(f"--n-jobs must be positive, got {args.n_jobs}")
    scenario_name = config.make_env(0).scenario  # a scenario file's own name; a bad one fails here
    study_name = args.study or f"{config.strategy}-{scenario_name}-{config.objective}"
    tune.check_study_name(study_name)
    eval_scenarios = [s.strip() for s in args.eval_scenarios.split(",") if s.strip()]
    for s in eval_scenarios:
        config.make_env(0, s)  # an unknown scenario fails now, not after the study
    out = args.out if args.out is not None else tune.DEFAULT_DIR / study_name
    # the default SQLite file: inside --out DIR, else results/tune/STUDY.db
    storage = args.storage or tune.default_storage(study_name, args.out, create=False)
    names = tune.output_names(config, True)
    if not args.worker:
        check_outputs(out, names, study_name, storage, args.force)
    elif args.out is not None and args.storage is None:
        writable(out, [], True)  # the folder of the default storage must be one we can make
    if args.storage is None:
        tune.default_storage(study_name, args.out)  # makes its folder
    log = (lambda msg: None) if args.quiet else tune.log_line

    study = None
    start = time.perf_counter()
    try:
        study = tune.open_study(config, storage, study_name, pruner=args.pruner,
                                sampler_seed=args.sampler_seed, progress=log)
        config = dataclasses.replace(config, target=study.user_attrs["reference"]["target"])
        ref = tune.reference_of(study)
        log(f"study {study_name} on {tune.redact(storage)}: target accuracy {ref.target:.4f} "
            f"({study.user_attrs.get('target_source')}), grpo spends {ref.rollouts:,.0f} rollouts; "
            f"{tune.finished(study)} of {args.trials} trials finished")
        requeued = tune.requeue_interrupted(study)
        if requeued:
            log(f"re-running {requeued} interrupted trial(s)")
        if args.n_jobs == 1:
            tune.optimize(study, config, args.trials, timeout=args.timeout, log=None if args.quiet else log)
        else:
            tune.run_workers(config, storage, study_name, args.trials, args.n_jobs, timeout=args.timeout,
                             pruner=args.pruner, sampler_seed=args.sampler_seed, quiet=args.quiet)
    except KeyboardInterrupt:
        kept = (f"{tune.finished(study)} finished trials are kept in {tune.redact(storage)}" if study
                else "nothing was run")
        print(f"allocbench: interrupted; {kept}; run the same command to resume", file=sys.stderr)
        return 130
    print(tune.summary(study, config) + f"\n({time.perf_counter() - start:,.1f} s)")
    if args.worker:
        return 0
    if not tune.counts(study)["complete"]:
        raise AllocbenchError(f"study {study_name} has no completed trial; nothing to write")
    return _write(study, config, storage, out, eval_scenarios, names, args.force, log)


def _write(study, config, storage: str, out: Path, eval_scenarios: list[str], names: list[str],
           force: bool, log: Callable[[str], None]) -> int:
    """Write the study's outputs into ``out`` (best.toml first: it names the study)."""
    from allocbench import tune
    from analysis import tune_figures

    files: dict[str, Callable[[str], None]] = {}
    toml = tune.best_toml(study, config, storage)
    files["best.toml"] = lambda tmp: Path(tmp).write_text(toml)
    table = tune.trials_table(study)
    files["trials.csv"] = lambda tmp: table.to_csv(tmp, index=False)
    pngs, notes = tune_figures.pngs(study, tune.figure_names(config.strategy), tune.contour_params(config.strategy))
    for name, data in pngs.items():
        files[name] = lambda tmp, data=data: Path(tmp).write_bytes(data)
    for note in notes:
        print(f"note: {note}")
    if eval_scenarios:
        rob = tune.robustness(study, config, eval_scenarios, log=log)
        files["robustness.csv"] = lambda tmp: rob.to_csv(tmp, index=False)
        print(rob.to_string(index=False, float_format=lambda v: f"{v:,.4g}"))
    # again: another command may have written into the folder while the study ran
    check_outputs(out, names, study.study_name, storage, force)
    written = tune.write_outputs(out, files)
    stale = [out / n for n in names if n not in files and (out / n).exists()]
    for path in stale:  # a figure not drawn this time must not survive from an earlier write
        path.unlink()
    print(f"wrote {', '.join(str(p) for p in written)}"
          + (f"; removed the earlier {', '.join(p.name for p in stale)}" if stale else ""))
    return 0
