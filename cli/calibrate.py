"""``allocbench calibrate``: fit a simulator scenario to real runs (``sim.calibrate``; the figure
from ``analysis.calibration_figures``)."""

from __future__ import annotations

import io
import math
import re
import sys
import time
from pathlib import Path

from allocbench.errors import AllocbenchError, ConfigError

DEFAULT_TRIALS = 200
DEFAULT_SEEDS = 4


def add_parser(sub) -> None:
    """Register ``allocbench calibrate`` on the CLI's subparsers."""
    p = sub.add_parser(
        "calibrate", help="fit the simulator's parameters to real runs; writes a scenario TOML",
        description="Fit a simulator scenario to the runs in RUNS_DIR (a folder written by "
        "`allocbench compare --env real`, or a leaderboard scenario folder: runs.parquet and "
        "groups.parquet). The starting pass-rate mixture (offsets) is fitted to the probe "
        "(--probe) or to the groups of the first steps (--start), feature_noise to the probe's feature R^2; "
        "lr, noise_scale, drift, skill_cap, "
        "loading_concentration, loading_spread (how unequally learnable prompts are) and the offsets' "
        "spread (offset_std) by an Optuna study (TPE) that "
        "simulates the fitting strategies and minimises the discrepancy to the real runs: held-out "
        "accuracy gain vs cumulative rollouts, zero-variance share per step, the histogram of group "
        "pass rates per third of training and the measured gradient noise scale, each in units of "
        "the real runs' seed noise, plus the likelihood the starting counts lose at the searched "
        "spread (see sim/calibrate.py). "
        "B, n, steps and the evaluation cadence are the real runs'. Writes SCENARIO.toml (use it "
        "as `--scenario SCENARIO.toml`), SCENARIO.fit.csv (one row per trial) and SCENARIO.png "
        "(real vs simulated). The study is kept in its storage: rerunning the same command "
        "resumes an interrupted one; with more --trials and --force it adds trials. Several RUNS_DIR "
        "(at the learning rates their runs record, or --lrs) fit one scenario to every regime at "
        "once: the discrepancy is the mean over the regimes, and SCENARIO@REGIME.png shows each "
        "further one.",
        epilog="example: allocbench calibrate results/real/noise-limited/tiny-arith-noise-limited "
        "--out scenarios/tiny-noise-limited.toml")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUNS_DIR",
                   help="folder with runs.parquet and groups.parquet; several folders (one per regime: the "
                   "same policy and pool at other prompts per step, steps or learning rate) "
                   "are fitted by one scenario, the first folder's shape written")
    p.add_argument("--lrs", default=None, metavar="LR,LR,...",
                   help="with several RUNS_DIR: the learner's learning rate of each folder's runs, in order "
                   "(e.g. 1e-4,3e-4); each regime simulates the scenario with lr in proportion. Default: the "
                   "rates the runs record (learn_lr, which real runs log from this version on); given, they "
                   "are checked against the recorded ones")
    p.add_argument("--out", type=Path, required=True, metavar="SCENARIO.toml",
                   help="the scenario file to write; SCENARIO.fit.csv and SCENARIO.png go beside it")
    p.add_argument("--probe", type=Path, default=None, metavar="PROBE_DIR",
                   help="an `allocbench probe` folder (probe.parquet) of the initial policy: the starting "
                   "pass rates are fitted to its counts (unless --start groups), and, when it holds feature "
                   "predictions, feature_noise is set to give the probe's feature R^2; without it the "
                   "starting pass rates come from the groups of the first steps")
    p.add_argument("--start", choices=("probe", "groups", "base"), default=None,
                   help="what the starting pass rates are fitted to: the probe's counts (the default with "
                   "--probe) or the groups of the first steps (the default without --probe; with it, the probe "
                   "then serves only feature_noise); base: none, they are --base's (to fit one more "
                   "parameter, e.g. --params stale_pull on grpo runs with a lag, to a fitted scenario)")
    p.add_argument("--fit-strategies", default="grpo",
                   help="comma-separated strategies whose runs are fitted (and simulated); default: grpo")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"finished trials the study should hold; default: {DEFAULT_TRIALS}")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"simulator seeds per trial (0..S-1, the same in every trial); default: {DEFAULT_SEEDS}")
    p.add_argument("--params", default=",".join(_space()),
                   help="comma-separated scenario fields the study searches (the default, or stale_pull: "
                   "the cost of stale rollouts, which only runs that train them move, e.g. grpo with "
                   "--set grpo.lag=2; or nuisance_dims: sizes the cost of noise apart from lr and "
                   "noise_scale; or eval_transfer: how far training moves the held-out prompts relative to "
                   "the pool's, when the held-out set is not drawn like the pool); the others come from --base; "
                   "default: %(default)s")
    p.add_argument("--parts", default="acc,zero_var,pass_hist,b_simple",
                   help="comma-separated summaries the discrepancy compares (module sim.calibrate): the "
                   "default, or with spread: the std over seeds of the held-out accuracy gain at each evaluation, "
                   "how far runs that differ only by their seed drift apart (it decides how many seeds a ranking "
                   "needs); default: %(default)s")
    p.add_argument("--base", default="default",
                   help="built-in scenario (or TOML file) that supplies the fields neither fitted nor taken "
                   "from the runs (skills, optimizer, lengths, ...) and the first trial's values; default: default")
    p.add_argument("--pool-size", type=int, default=None,
                   help="training prompts of the simulated pool; default: the real preset's pool when it is "
                   "known, else 20,000")
    p.add_argument("--study", default=None,
                   help="study name; default: calibrate-STEM (STEM: the --out file's stem, other characters than "
                   "letters, digits, '.', '_', '-' made '-')")
    p.add_argument("--storage", default=None,
                   help="Optuna RDB URL, e.g. postgresql://user:pass@host/db; default: the SQLite file "
                   "STUDY.db beside --out")
    p.add_argument("--sampler-seed", type=int, default=0,
                   help="seed of the TPE sampler (with --restarts, of the first study); default: 0")
    p.add_argument("--restarts", type=int, default=1,
                   help="run this many studies, at sampler seeds --sampler-seed, +1, ... (named STUDY-sSEED, each "
                   "in its own default storage STUDY-sSEED.db or all in --storage), and keep the one whose best "
                   "trial has the least discrepancy re-measured on 3 sets of fresh simulator seeds; "
                   "SCENARIO.restarts.csv lists them. Real runs of one strategy leave the parameters that order "
                   "the others loosely pinned down, and studies from other seeds end in different places; "
                   "default: 1 (one study, named STUDY)")
    p.add_argument("--allow-sim", action="store_true",
                   help="accept runs of the simulator (env sim): a parameter-recovery check")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_calibrate)


def _space() -> tuple[str, ...]:
    return ("lr", "noise_scale", "drift", "skill_cap", "loading_concentration", "loading_spread", "offset_std")


def cmd_calibrate(args) -> int:
    from allocbench.tune import routed_interrupts

    with routed_interrupts():
        return _cmd_calibrate(args)


def output_paths(out: Path, regimes: tuple[str, ...] = (), restarts: int = 1) -> dict[str, Path]:
    """SCENARIO.toml, SCENARIO.fit.csv, SCENARIO.png, SCENARIO@REGIME.png for each further
    regime, by kind (``png@REGIME``), and with restarts SCENARIO.restarts.csv."""
    return ({"toml": out, "csv": out.with_name(out.stem + ".fit.csv"), "png": out.with_name(out.stem + ".png")}
            | {f"png@{r}": out.with_name(f"{out.stem}@{r}.png") for r in regimes}
            | ({"restarts": out.with_name(out.stem + ".restarts.csv")} if restarts > 1 else {}))


def given_lrs(text: str | None, folders: list[Path]) -> list[float] | None:
    """The learning rates ``--lrs`` gives, one per folder (None: not given)."""
    if text is None:
        return None
    if len(folders) == 1:
        raise ConfigError("--lrs is for several RUNS_DIR (one learning rate per folder)")
    try:
        lrs = [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--lrs must be comma-separated numbers, got {text!r}") from None
    if len(lrs) != len(folders):
        raise ConfigError(f"--lrs gives {len(lrs)} learning rates for {len(folders)} RUNS_DIR")
    if not all(math.isfinite(x) and x > 0 for x in lrs):
        raise ConfigError(f"--lrs must be positive, got {text}")
    return lrs


def lr_scales(given: list[float] | None, recorded: list[float | None], folders: list[Path]) -> list[float]:
    """Each folder's learning rate over the first one's: from ``--lrs`` (checked against the
    rates the runs record, where they do) or else from the recorded rates."""
    if len(folders) == 1:
        return [1.0]
    for folder, lr, seen in zip(folders, given or [], recorded):
        if seen is not None and not math.isclose(lr, seen, rel_tol=1e-6):
            raise ConfigError(f"--lrs gives {lr:g} for {folder}, but its runs record a learning rate of {seen:g}")
    if given is None:
        missing = [str(f) for f, seen in zip(folders, recorded) if seen is None]
        if missing:
            raise ConfigError(f"{len(folders)} RUNS_DIR need --lrs: the learner's learning rate of each folder's runs, "
                              f"in order (e.g. --lrs 1e-4,3e-4); the runs in {', '.join(missing)} do not record it")
    lrs = given or recorded
    return [x / lrs[0] for x in lrs]


def preset_pool(env: str, scenario: str) -> int | None:
    """The training pool size of the real preset or sim scenario the runs name, if known."""
    try:
        if env == "real":
            from real.presets import PRESETS

            preset = PRESETS.get(scenario)
            return preset.data.train_size if preset is not None else None
        if env == "sim":
            from sim.scenarios import scenario_names, get_scenario

            return get_scenario(scenario).pool_size if scenario in scenario_names() else None
    except Exception:  # a nicety: the default pool serves
        return None
    return None


def figure_png(regime, sim, total: float, first: str, stem: str, joint: bool) -> bytes:
    """The calibration figure of one regime (real vs the fitted simulator), as PNG bytes; a
    joint fit's figures name their regime."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from analysis.calibration_figures import calibration_figure

    real, simulated = regime.real.tagged("real"), sim.tagged("sim")
    tables = {name: pd.concat([real[name], simulated[name]], ignore_index=True) for name in real}
    noise = ""
    real_b, sim_b = (t.loc[t["strategy"] == first, "b_simple"] for t in (regime.real.b_simple, sim.b_simple))
    if len(real_b) and len(sim_b):
        noise = f"; {first}'s B_simple real {real_b.iloc[0]:,.0f}, sim {sim_b.iloc[0]:,.0f}"
    where = f" in {regime.scenario}" if joint else ""
    fig = calibration_figure(tables["acc"], tables["zero_var"], tables["pass_hist"],
                             spread=tables["spread"] if "spread" in regime.parts else None,
                             title=f"{stem}{where}: real ({regime.real.seeds} seeds) vs fitted simulator "
                             f"({regime.seeds} seeds); discrepancy {total:.2f}{noise}")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=200)
    plt.close(fig)
    return png.getvalue()


def _cmd_calibrate(args) -> int:
    import pandas as pd

    from allocbench.schema import writable, write_atomic
    from allocbench.tune import check_study_name, deferred_interrupts, default_storage, finished, log_line, redact
    from sim import calibrate as cal

    out: Path = args.out
    if out.suffix != ".toml" or out.stem in ("", ".toml"):
        raise ConfigError(f"--out must name a .toml file, got {out}")
    if args.trials < 0:
        raise ConfigError(f"--trials must be >= 0, got {args.trials}")
    if args.seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {args.seeds}")
    if args.restarts < 1:
        raise ConfigError(f"--restarts must be >= 1, got {args.restarts}")
    if args.pool_size is not None and args.pool_size <= 0:
        raise ConfigError(f"--pool-size must be positive, got {args.pool_size}")
    strategies = tuple(s.strip() for s in args.fit_strategies.split(",") if s.strip())
    params = tuple(s.strip() for s in args.params.split(",") if s.strip())
    parts = cal.check_parts(tuple(s.strip() for s in args.parts.split(",") if s.strip()), args.seeds)
    study_name = args.study or "calibrate-" + re.sub(r"[^A-Za-z0-9._-]", "-", out.stem)
    check_study_name(study_name)
    sampler_seeds = [args.sampler_seed + i for i in range(args.restarts)]
    names = [study_name] if args.restarts == 1 else [f"{study_name}-s{seed}" for seed in sampler_seeds]
    lrs = given_lrs(args.lrs, args.runs)
    writable(out.parent, [p.name for p in output_paths(out, restarts=args.restarts).values()], args.force)
    cal.check_inputs(strategies, args.seeds, params, args.base)
    if args.start == "probe" and args.probe is None:
        raise ConfigError("--start probe needs --probe PROBE_DIR")
    probe = cal.read_probe(args.probe) if args.probe is not None else None
    # the input errors, before anything
    tables = [cal.read_runs(folder, strategies, args.allow_sim) for folder in args.runs]
    scales = lr_scales(lrs, [cal.recorded_lr(runs) for runs, _ in tables], args.runs)
    runs = tables[0][0]
    pool = args.pool_size
    if pool is None:
        pool = preset_pool(str(runs["env"].iloc[0]), str(runs["scenario"].iloc[0]))
    setup = cal.prepare(args.runs[0], strategies, probe=probe, start=args.start or "probe", allow_sim=args.allow_sim,
                        seeds=args.seeds, base=args.base, pool_size=pool, params=params, tables=tables[0],
                        also=tuple(zip(args.runs[1:], scales[1:], tables[1:])), parts=parts)
    paths = output_paths(out, tuple(r.scenario for r in setup.also), args.restarts)
    writable(out.parent, [p.name for p in paths.values()], args.force)
    storages = [args.storage or default_storage(name, out.parent, create=False) for name in names]
    log = (lambda msg: None) if args.quiet else log_line
    if args.storage is None:
        default_storage(study_name, out.parent)  # makes the folder

    for regime, (regime_runs, regime_groups) in zip(setup.regimes(), tables):
        pool, held_out = cal.pool_and_held_out_gains(regime_runs, regime_groups)
        log(f"{regime.scenario}: over the real runs the pool's pass rate gains {pool:+.3f}, held-out accuracy "
            f"{held_out:+.3f}" + (f" ({held_out / pool:.2f}x; --params ...,eval_transfer fits a held-out set not "
                                  "drawn like the pool)" if pool > 0 else ""))
    start = time.perf_counter()
    studies = []
    try:
        for name, storage, seed in zip(names, storages, sampler_seeds):
            study = cal.open_study(setup, storage, name, seed)
            studies.append(study)
            for regime in setup.regimes():
                b = f"{regime.b_simple:,.0f}" if regime.b_simple is not None else "not reported"
                log(f"study {name} on {redact(storage)}: {', '.join(strategies)} x {regime.real.seeds} real seeds of "
                    f"{regime.scenario}, {regime.steps} steps, B = {regime.base.train_batch}, "
                    f"n = {regime.base.group_size}" + (f", lr x {regime.lr_scale:g}" if setup.also else "")
                    + f"; measured B_simple {b}")
            log(f"starting pass rates from {setup.start_origin()}; {finished(study)} of {args.trials} trials finished")
            cal.optimize(study, setup, args.trials, log=log)
    except KeyboardInterrupt:
        kept = "; ".join(f"{finished(s)} finished trials of {n} are kept in {redact(u)}"
                         for s, n, u in zip(studies, names, storages)) or "nothing was run"
        print(f"allocbench: interrupted; {kept}; run the same command to resume; nothing written", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start
    for study, name in zip(studies, names):
        if not any(t.value is not None for t in study.get_trials(deepcopy=False)):
            raise AllocbenchError(f"study {name} has no completed trial; nothing to write")

    # everything is computed before the first file is written
    restarts, chosen = None, 0
    if args.restarts > 1:
        log(f"re-measuring the {len(studies)} studies' best trials on fresh simulator seeds")
        chosen, restarts = cal.choose_restart(setup, list(zip(names, sampler_seeds, studies)))
    study, study_name, storage = studies[chosen], names[chosen], storages[chosen]
    number, best = cal.best_params(study)
    parts, regimes = setup.evaluate_regimes(best, name=out.stem)
    scenario = cal.fitted(setup, best, out.stem)
    header = cal.header_lines(setup, parts, study_name, storage, number, finished(study), best, path=str(out))
    if restarts is not None:
        header.insert(1, cal.restarts_line(restarts, setup.seeds))
    toml = cal.scenario_toml(scenario, header)
    table = (cal.trials_table(study, setup) if restarts is None else pd.concat(
        [cal.trials_table(s, setup).assign(study=n) for s, n in zip(studies, names)], ignore_index=True))
    pngs = {kind: figure_png(regime, sim, own["total"], strategies[0], out.stem, bool(setup.also))
            for kind, regime, (own, _, _, sim) in zip([k for k in paths if k.startswith("png")], setup.regimes(),
                                                      regimes)}
    writable(out.parent, [p.name for p in paths.values()], args.force)  # again: the study took a while
    out.parent.mkdir(parents=True, exist_ok=True)
    with deferred_interrupts():  # one Ctrl-C waits until the files are in place and reported
        write_atomic(paths["csv"], lambda tmp: table.to_csv(tmp, index=False))
        if restarts is not None:
            write_atomic(paths["restarts"], lambda tmp: restarts.to_csv(tmp, index=False))
        for kind, png in pngs.items():
            write_atomic(paths[kind], lambda tmp, png=png: Path(tmp).write_bytes(png))
        write_atomic(paths["toml"], lambda tmp: Path(tmp).write_text(toml))
        if restarts is not None:
            print(f"kept study {study_name} of {len(studies)} (least discrepancy on fresh simulator seeds: "
                  + ", ".join(f"{r.fresh_total:.3f}" for r in restarts.itertuples()) + ")")
        print(f"best of {finished(study)} trials: trial {number}, discrepancy {cal.format_parts(parts)}")
        print("  " + ", ".join(f"{k}={v:.4g}" for k, v in best.items())
              + f"; offsets {', '.join(f'({w:g}, {m:g}, {s:g})' for w, m, s in scenario.offsets)}")
        print(f"({elapsed:,.1f} s) wrote {', '.join(str(p) for p in paths.values())}")
    return 0
