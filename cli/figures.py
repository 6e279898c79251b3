"""``allocbench figures RESULTS_DIR --out DIR``: figures and a report from every results table."""

from __future__ import annotations

from pathlib import Path

from allocbench.config import check_bootstrap, check_target
from allocbench.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "figures", help="figures and a report from every results table under a folder",
        description="Read every runs.parquet / runs.csv (and Optuna trials.csv) under RESULTS_DIR "
        "and write publication figures (PNG and PDF), the statistics behind them (CSV) and "
        "DIR/report.md + DIR/report.html embedding the PNGs. Figures whose data is absent are "
        "skipped with the reason in the report.")
    p.add_argument("results", type=Path, metavar="RESULTS_DIR", help="folder searched for results tables")
    p.add_argument("--out", type=Path, required=True, help="output folder (created with its parents)")
    p.add_argument("--target", type=float, default=None,
                   help="target held-out accuracy for every table; default: per (env, scenario), "
                   "the peak of grpo's seed-mean curve")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples; default: 2000")
    p.add_argument("--level", type=float, default=0.95, help="confidence level; default: 0.95")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed; default: 0")
    p.add_argument("--format", default="png,pdf", help="comma-separated figure formats; default: png,pdf")
    p.add_argument("--force", action="store_true", help="replace existing files in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one tick per env and scenario)")
    p.set_defaults(func=cmd_figures)


def cmd_figures(args) -> int:
    from analysis.report import FORMATS, build_report

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or "png" not in formats:
        raise ConfigError(f"--format takes png (required: the report embeds it) and pdf, got {args.format!r}")
    check_bootstrap(args.boot, args.level, flag="--boot", minimum=100)
    check_target(args.target)
    written = build_report(args.results, args.out, force=args.force, target=args.target,
                           n_boot=args.boot, level=args.level, seed=args.seed, formats=formats,
                           progress=not args.quiet)
    print(f"wrote {len(written)} files to {args.out}: report.md, report.html, "
          f"{sum(p.suffix == '.png' for p in written)} figures")
    return 0
