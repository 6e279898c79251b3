"""``allocbench validate SIM_DIR REAL_DIR --out DIR``: how well the simulator's ranking of
strategies agrees with a real leaderboard's."""

from __future__ import annotations

import io
from pathlib import Path

from allocbench.config import check_bootstrap, check_target
from allocbench.errors import ConfigError
from analysis.stats import LEVEL, N_BOOT
from analysis.validate import N_SPLITS, PAIRED_FROM

FILES = ["validate.csv", "agreement.csv", "validate.png", "replicates.csv", "replicates.png", "paired.csv",
         "paired.png"]
PAIRED_FILES = ["paired.csv", "paired.png"]  # what a comparison of two strategies writes
MIN_RANKED = 3  # strategies in both tables for a ranking to compare


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate", help="how well the simulator's ranking of strategies agrees with a real leaderboard's",
        description="Compare the simulator's ranking of strategies with a real one. SIM_DIR and REAL_DIR "
        "are each an `allocbench compare` output folder (with runs.parquet) or an `allocbench leaderboard` "
        "folder with one scenario subfolder (with several, pick one with --sim-scenario / --real-scenario). "
        "Each side is read at its own target, by default the peak of the reference's (grpo's) seed-mean "
        "accuracy curve on that side. Over the strategies both sides ran: Kendall's tau-b between the two "
        "rankings by rollouts to target (never reached = last), with a percentile-bootstrap interval that "
        "redraws each side's seeds independently; per strategy, its speed-up over the reference "
        "(rollouts of the reference / its rollouts, to that side's target) on each side with bootstrap "
        "intervals, its ranks and how many seeds reached the target. Prints a table and the tau line and "
        "writes DIR/validate.csv (one row per strategy), DIR/agreement.csv (one row) and DIR/validate.png "
        "(simulated vs real speed-ups, log-log; simulated vs real ranks). "
        "The yardstick for tau: a tau between rankings of a few seeds each is lowered by both sides' seed "
        "noise, so no simulator can be expected to agree with m real seeds better than m other real seeds "
        "do. For m = 1 up to half the real seeds, over random splits: tau between two disjoint sets of m real "
        "seeds, and between m simulated seeds and m real ones (DIR/replicates.csv, one row per m, and "
        "DIR/replicates.png). From the real seeds' own agreement it prints the tau an exact simulator "
        "would be expected to reach against all the real seeds, how often it would reach 0.8, and how many "
        "real seeds an expected 0.8 needs (analysis.stats.exact_model_tau). Also prints how far the "
        "reference's runs drift apart by seed on each side (the std over seeds of its accuracy gain). "
        "Beside the ranks, which differences the real seeds can resolve at all: per strategy, its held-out "
        "accuracy minus the reference's at equal rollouts, averaged over the reference's evaluations from "
        f"{PAIRED_FROM:g} x its final spend on and paired by seed, with a Student-t interval over seeds on each side, "
        "and a verdict (better, worse, unresolved, same runs, no overlap) (DIR/paired.csv, one row per "
        "strategy, and DIR/paired.png, simulated against real differences); it prints how many the real "
        "seeds resolve and whether the simulator gives them the same sign. With only two strategies in both "
        "tables (the reference and one other) there is no ranking to compare: it writes and prints the paired "
        "differences only.")
    p.add_argument("sim", type=Path, metavar="SIM_DIR", help="the simulated results folder")
    p.add_argument("real", type=Path, metavar="REAL_DIR", help="the real results folder")
    p.add_argument("--more-real", type=Path, action="append", default=[], metavar="DIR",
                   help="another real results folder of the same scenario (strategies run later); runs "
                   "found in both must be the same runs (repeatable)")
    p.add_argument("--more-sim", type=Path, action="append", default=[], metavar="DIR",
                   help="another simulated results folder of the same scenario (more seeds, say); as --more-real")
    p.add_argument("--out", type=Path, required=True, help="output folder (created with its parents)")
    p.add_argument("--sim-scenario", default=None, metavar="NAME",
                   help="the scenario to read from SIM_DIR when it holds several (a leaderboard folder)")
    p.add_argument("--real-scenario", default=None, metavar="NAME",
                   help="the scenario to read from REAL_DIR when it holds several (a leaderboard folder)")
    p.add_argument("--sim-target", type=float, default=None, metavar="ACC",
                   help="target accuracy in the simulator; default: the reference's peak seed-mean accuracy there")
    p.add_argument("--real-target", type=float, default=None, metavar="ACC",
                   help="target accuracy in the real runs; default: the reference's peak seed-mean accuracy there")
    p.add_argument("--reference", default="grpo",
                   help="the strategy speed-ups are taken over and targets from; must be on both sides; default: grpo")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap resamples; default: {N_BOOT}")
    p.add_argument("--level", type=float, default=LEVEL, help=f"confidence level; default: {LEVEL}")
    p.add_argument("--splits", type=int, default=N_SPLITS, metavar="N",
                   help=f"random splits of the seeds per number of seeds a side for the yardstick; default: {N_SPLITS}")
    p.add_argument("--seed", type=int, default=0, help="bootstrap and split seed; default: 0")
    p.add_argument("--force", action="store_true", help="replace existing files in DIR")
    p.set_defaults(func=cmd_validate)


def runs_path(folder: Path, scenario: str | None, side: str) -> Path:
    """The runs.parquet a results folder names: its own (a compare folder), or that of its one
    scenario subfolder, or of subfolder ``scenario`` (a leaderboard folder)."""
    flag = f"--{side}-scenario"
    if not folder.exists():
        raise ConfigError(f"{side} results: no such folder: {folder}")
    if not folder.is_dir():
        raise ConfigError(f"{side} results: {folder} is a file, not a folder")
    if scenario is not None and (folder / scenario / "runs.parquet").is_file():
        return folder / scenario / "runs.parquet"
    if (folder / "runs.parquet").is_file():
        return folder / "runs.parquet"
    subs = sorted(p.parent.name for p in folder.glob("*/runs.parquet") if p.is_file())
    if scenario is not None:
        raise ConfigError(f"{side} results: {folder} has no {scenario}/runs.parquet"
                          + (f" (scenarios there: {', '.join(subs)})" if subs else ""))
    if not subs:
        raise ConfigError(f"{side} results: {folder} holds no runs.parquet, neither itself nor in a scenario "
                          "subfolder (expected an `allocbench compare` or `allocbench leaderboard` folder)")
    if len(subs) > 1:
        raise ConfigError(f"{side} results: {folder} holds {len(subs)} scenarios ({', '.join(subs)}); "
                          f"pick one with {flag}")
    return folder / subs[0] / "runs.parquet"


def read_runs(path: Path, what: str = ""):
    """A results table, or one ConfigError line naming the file (``what`` prefixes it)."""
    from allocbench.schema import read_table

    try:
        return read_table(path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"{what}cannot read {path}: {err}") from None


def read_side(folder: Path, scenario: str | None, side: str):
    """The table of one side, of one scenario."""
    path = runs_path(folder, scenario, side)
    table = read_runs(path, f"{side} results: ")
    if scenario is not None:
        table = table[table["scenario"] == scenario]
        if table.empty:
            raise ConfigError(f"{side} results: {path} has no rows of scenario {scenario!r}")
    return table


def cmd_validate(args) -> int:
    from allocbench.schema import writable, write_atomic
    from analysis.validate import (agreement_table, combine, common_strategies, exact_model_line, paired,
                                   paired_line, render, replicate_line, replicates, spread_line, validate)

    check_target(args.sim_target, "--sim-target")
    check_target(args.real_target, "--real-target")
    check_bootstrap(args.n_boot, args.level)
    if args.splits < 1:
        raise ConfigError(f"--splits must be a positive integer, got {args.splits}")
    sim, real = (combine([read_side(folder, scenario, side) for folder in folders], side)
                 for side, folders, scenario in (("sim", [args.sim, *args.more_sim], args.sim_scenario),
                                                 ("real", [args.real, *args.more_real], args.real_scenario)))
    # a tau over two strategies is +-1 whatever the data (one pair): with fewer than three in
    # common only the paired differences mean something
    ranked = len(common_strategies(sim, real, args.reference)) >= MIN_RANKED
    names = FILES if ranked else PAIRED_FILES
    paths = writable(args.out, names, args.force)
    differences = paired(sim, real, reference=args.reference, level=args.level)
    if ranked:
        table, agreement = validate(sim, real, args.sim_target, args.real_target, reference=args.reference,
                                    n_boot=args.n_boot, level=args.level, seed=args.seed)
        yardstick = replicates(sim, real, args.sim_target, args.real_target, reference=args.reference,
                               n_splits=args.splits, level=args.level, seed=args.seed)

    from analysis.figures import replicate_taus, sim_vs_real_differences, sim_vs_real_speedups

    def png(figure) -> bytes:
        import matplotlib.pyplot as plt

        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=200)
        plt.close(figure)  # pyplot keeps every figure open until closed
        return out.getvalue()

    files = {"paired.csv": differences.to_csv(index=False).encode(),
             "paired.png": png(sim_vs_real_differences(differences))}
    if ranked:
        files |= {"validate.csv": table.to_csv(index=False).encode(),
                  "agreement.csv": agreement_table(agreement).to_csv(index=False).encode(),
                  "validate.png": png(sim_vs_real_speedups(table, agreement)),
                  "replicates.csv": yardstick.to_csv(index=False).encode(),
                  "replicates.png": png(replicate_taus(yardstick, agreement))}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_atomic(paths[name], lambda tmp, data=files[name]: Path(tmp).write_bytes(data))
    if ranked:
        print(render(table, agreement))
        print(replicate_line(yardstick))
        print(exact_model_line(yardstick, int(table["real_seeds"].min()), len(table)))
    else:
        print(f"two strategies in both tables: no ranking to compare (Kendall's tau needs at least "
              f"{MIN_RANKED}); the paired differences only")
    print(spread_line(sim, real, args.reference))
    print(paired_line(differences, args.level))
    print(f"wrote {', '.join(str(paths[n]) for n in names)}")
    return 0
