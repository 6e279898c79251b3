"""``allocbench regret RESULTS... --out DIR``: is one strategy, scenario by scenario, within a
tolerance of the best of its rivals, and how much faster than each?"""

from __future__ import annotations

from pathlib import Path

from allocbench.config import check_bootstrap
from allocbench.errors import ConfigError
from analysis.stats import LEVEL, N_BOOT

FILES = ["regret.csv", "regret.md"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "regret", help="a strategy's rollouts to target against the best of its rivals, per scenario",
        description="For every scenario in RESULTS (`allocbench compare` or `allocbench leaderboard` "
        "folders; folders holding the same env and scenario are read as one, and runs they share must be "
        "the same runs): STRATEGY's rollouts to the target over the best rival's (ratio; 1.05 = 5%% more), "
        "and its speed-up over each rival, with percentile seed-bootstrap intervals. Runs of one scenario "
        "to another horizon (--steps) are another comparison. The target is the peak "
        "of the reference's (grpo's) seed-mean accuracy curve in that scenario. A rival that never reaches "
        "it gives a lower bound (its whole spend over STRATEGY's rollouts). Prints a markdown table and "
        "geometric means over scenarios; writes DIR/regret.csv and DIR/regret.md.")
    p.add_argument("results", type=Path, nargs="+", metavar="RESULTS", help="results folders")
    p.add_argument("--strategy", default="screen_on_plateau", help="the strategy to check; default: screen_on_plateau")
    p.add_argument("--rivals", default="grpo,pilot_commit",
                   help="comma-separated strategies it must keep up with; default: grpo,pilot_commit")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="within = its rollouts at most (1 + this) x the best rival's; default: 0.05")
    p.add_argument("--reference", default="grpo", help="whose peak is the target; default: grpo")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap resamples; default: {N_BOOT}")
    p.add_argument("--level", type=float, default=LEVEL, help=f"confidence level; default: {LEVEL}")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed; default: 0")
    p.add_argument("--out", type=Path, required=True, help="output folder (created with its parents)")
    p.add_argument("--force", action="store_true", help="replace existing files in DIR")
    p.set_defaults(func=cmd_regret)


def scenario_tables(folders: list[Path]) -> list:
    """One table per (env, scenario, steps) found in the folders, in the order first found:
    the same scenario run to another horizon (``--steps``) is another comparison."""
    from analysis.validate import combine
    from cli.validate import read_runs

    found: dict[tuple[str, str, int], list] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"no such results folder: {folder}")
        paths = [folder / "runs.parquet"] if (folder / "runs.parquet").is_file() else sorted(folder.glob("*/runs.parquet"))
        if not paths:
            raise ConfigError(f"{folder} holds no runs.parquet, neither itself nor in a scenario subfolder")
        for path in paths:
            for (env, scenario), part in read_runs(path).groupby(["env", "scenario"], sort=False):
                found.setdefault((env, scenario, int(part["step"].max())), []).append(part)
    return [combine(parts, f"{env} {scenario} ({steps} steps)") for (env, scenario, steps), parts in found.items()]


def cmd_regret(args) -> int:
    from allocbench.schema import writable, write_atomic
    from allocbench.strategy import strategy_class
    from analysis.regret import regret, render

    rivals = [r.strip() for r in args.rivals.split(",") if r.strip()]
    for name in [args.strategy, *rivals, args.reference]:
        strategy_class(name)  # an unknown name fails here, with the known ones
    if not rivals or args.strategy in rivals:
        raise ConfigError("--rivals must name at least one strategy other than --strategy")
    if not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    check_bootstrap(args.n_boot, args.level)
    tables = scenario_tables(args.results)
    paths = writable(args.out, FILES, args.force)
    table = regret(tables, args.strategy, rivals, reference=args.reference, tolerance=args.tolerance,
                   n_boot=args.n_boot, level=args.level, seed=args.seed)
    text = render(table, args.strategy, rivals, args.tolerance)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(paths["regret.csv"], lambda tmp: table.to_csv(tmp, index=False))
    write_atomic(paths["regret.md"], lambda tmp: Path(tmp).write_text(text + "\n"))
    print(text)
    print(f"wrote {', '.join(str(paths[n]) for n in FILES)}")
    return 0
