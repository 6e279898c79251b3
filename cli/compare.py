"""``allocbench compare``, ``leaderboard``, ``strategies`` and ``scenarios``."""

from __future__ import annotations

import argparse
import dataclasses
import io
import textwrap
from pathlib import Path

from allocbench.config import check_target, strategy_params
from allocbench.errors import ConfigError

DEFAULT_STRATEGIES = "grpo,dapo,pilot_commit"


def add_parser(sub) -> None:
    """Register compare, leaderboard, strategies and scenarios."""
    shared = argparse.ArgumentParser(add_help=False)  # the options compare and leaderboard share
    shared.add_argument("--strategies", default=None,
                        help=f"comma-separated strategy names, or 'all'; default: {DEFAULT_STRATEGIES} "
                        "for compare, all for leaderboard")
    shared.add_argument("--seeds", default="5",
                        help="N: seeds 0..N-1 (default: 5); or which seeds, as a range A-B (inclusive) or "
                        "a list 5,7,9: more seeds for a board already run, whose runs repeat bit for bit")
    shared.add_argument("--steps", type=int, default=None, help="training steps per run; default: the scenario's")
    shared.add_argument("--target", type=float, default=None,
                        help="target held-out accuracy; default: the peak of grpo's seed-mean curve")
    shared.add_argument("--budget", type=int, default=None, help="total rollouts per run (equal-budget comparison)")
    shared.add_argument("--train-batch", type=int, default=None, help="prompts per step B; default: the scenario's")
    shared.add_argument("--group-size", type=int, default=None,
                        help="baseline rollouts per prompt n; default: the scenario's")
    shared.add_argument("--eval-every", type=int, default=None,
                        help="steps between evaluations; default: the scenario's (10 in sim)")
    shared.add_argument("--set", dest="hp", action="append", default=[], metavar="STRATEGY.PARAM=VALUE",
                        help="set a hyper-parameter, e.g. pilot_commit.pilot_fraction=0.3 (repeatable)")
    shared.add_argument("--config", type=Path, default=None,
                        help="TOML file: [strategies.NAME] tables of hyper-parameters (--set wins)")
    shared.add_argument("--env", default="sim", help="environment: sim (default) or real")
    shared.add_argument("--jobs", type=int, default=1, help="parallel worker processes; default: 1")
    shared.add_argument("--csv", action="store_true", help="also write runs.csv")
    shared.add_argument("--log-groups", action=argparse.BooleanOptionalAction, default=None,
                        help="also write groups.parquet, one row per (run, step, round, prompt); "
                        "default: on for --env real, off for sim (paper-scale sim runs make ~10^5 rows each)")
    shared.add_argument("--force", action="store_true", help="replace existing result files")
    shared.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("compare", parents=[shared],
                       help="run strategies x seeds on one scenario; write table, figure, speed-ups",
                       description="Run each strategy on each seed and write DIR/runs.parquet (one row per run "
                       "x step), DIR/accuracy_vs_rollouts.png and DIR/speedup.csv (rollouts to the target "
                       "accuracy and speed-ups against grpo and dapo).")
    p.add_argument("--scenario", default="default",
                   help="scenario name (see `allocbench scenarios`) or a scenario TOML file; default: default")
    p.add_argument("--out", type=Path, required=True, help="output folder (created with its parents)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("leaderboard", parents=[shared],
                       help="compare strategies on every scenario; write DIR/<scenario>/ and DIR/leaderboard.md",
                       description="Run `compare` on each scenario into DIR/<scenario>/, then write "
                       "DIR/leaderboard.csv and DIR/leaderboard.md (rollouts and tokens to target, rounds "
                       "per step, final accuracy, each with its spread over seeds). Strategies default to all.")
    p.add_argument("--scenarios", default="all",
                   help="comma-separated scenario names or TOML files, or 'all' (default): the built-in ones")
    p.add_argument("--out", type=Path, default=Path("results/leaderboard"),
                   help="output folder; default: results/leaderboard")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("strategies", help="list strategies with their hyper-parameters and defaults")
    p.set_defaults(func=cmd_strategies)
    p = sub.add_parser("scenarios", help="list simulator scenarios, or print one as TOML",
                       description="List the simulator's built-in scenarios, or print one (--show) as a TOML "
                       "file that --scenario FILE reads back: copy it, change fields, run it; or print it changed with "
                       "--set / --scale.")
    p.add_argument("--show", metavar="NAME", help="print scenario NAME (or a scenario TOML file, checked) as TOML")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="with --show: print it with FIELD set to VALUE, range-checked (repeatable), e.g. "
                   "train_batch=64")
    p.add_argument("--scale", dest="scales", action="append", default=[], metavar="FIELD=FACTOR",
                   help="with --show: print it with the number FIELD multiplied by FACTOR > 0 (repeatable), "
                   "e.g. lr=3: a fitted scenario moved to another real configuration (the transfer test)")
    p.set_defaults(func=cmd_scenarios)


def output_paths(out: Path, args) -> dict[str, Path]:
    """The files a comparison writes into ``out``."""
    from allocbench.schema import writable

    names = (["runs.parquet", "accuracy_vs_rollouts.png", "speedup.csv"] + (["runs.csv"] if args.csv else [])
             + (["groups.parquet"] if log_groups(args) else []))
    return writable(out, names, args.force)


def log_groups(args) -> bool:
    return args.env == "real" if args.log_groups is None else args.log_groups


def parse_strategies(args, default: str) -> list:
    from allocbench.strategy import make_strategy, strategy_names

    chosen = args.strategies or default
    if chosen == "all":  # the paper's three first, then the peers
        names = DEFAULT_STRATEGIES.split(",") + [n for n in strategy_names() if n not in DEFAULT_STRATEGIES]
    else:
        names = [s.strip() for s in chosen.split(",") if s.strip()]
    if not names:
        raise ConfigError("--strategies is empty")
    params = strategy_params(names, args.config, args.hp)
    if args.jobs <= 0:
        raise ConfigError(f"--jobs must be positive, got {args.jobs}")
    check_target(args.target)
    if args.target is None and "grpo" not in names:
        raise ConfigError("the default target is grpo's peak accuracy: include grpo or pass --target")
    return [make_strategy(name, **params[name]) for name in names]


def parse_seeds(text) -> list[int]:
    """``--seeds``: "N" is seeds 0..N-1; "A-B" seeds A..B; "a,b,c" those seeds (distinct, >= 0)."""
    text = str(text).strip()
    if text.isdigit():
        if int(text) <= 0:
            raise ConfigError(f"--seeds must be positive, got {text}")
        return list(range(int(text)))
    try:
        if "-" in text and "," not in text:
            first, last = (int(part) for part in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds takes N, a range A-B or a list a,b,c of seeds >= 0, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise ConfigError(f"--seeds takes N, a range A-B or a list a,b,c of distinct seeds >= 0, got {text!r}")
    return seeds


def run_config(args, env):
    from allocbench.runner import RunConfig

    def given(value, default):
        return default if value is None else value  # 0 is passed on, for RunConfig to refuse

    return RunConfig(steps=given(args.steps, env.info.get("steps", 200)), train_batch=args.train_batch,
                     group_size=args.group_size, budget=args.budget,
                     eval_every=given(args.eval_every, env.info.get("eval_every", 10)))


def check_shapes(strategies: list, env, config) -> None:
    """Bind every strategy to the run's B and n now, so a setting that cannot run at this shape
    fails before the first run rather than in the middle of the comparison."""
    for strategy in strategies:
        strategy.bind(config.train_batch or env.train_batch, config.group_size or env.group_size)


def write_results(paths: dict[str, Path], table, groups, target: float | None):
    """Write a comparison's table, groups log, speed-ups and figure (all computed before the
    first write); return the speed-up table."""
    from allocbench.metrics import default_target, speedup_table
    from allocbench.schema import check_groups, write_atomic, write_groups, write_table
    from analysis.figures import accuracy_vs_rollouts  # the CLI composes; the core draws nothing

    target = target if target is not None else default_target(table)
    speedups = speedup_table(table, target)
    png = io.BytesIO()
    accuracy_vs_rollouts(table, target).savefig(png, format="png", dpi=300)
    next(iter(paths.values())).parent.mkdir(parents=True, exist_ok=True)
    if groups is not None:
        check_groups(groups, table)
    write_table(table, paths["runs.parquet"])
    if groups is not None:
        write_groups(groups, paths["groups.parquet"])
    if "runs.csv" in paths:
        write_table(table, paths["runs.csv"])
    write_atomic(paths["accuracy_vs_rollouts.png"], lambda tmp: Path(tmp).write_bytes(png.getvalue()))
    write_atomic(paths["speedup.csv"], lambda tmp: speedups.to_csv(tmp, index=False))
    return speedups


def cmd_compare(args) -> int:
    from allocbench.compare import compare
    from allocbench.envs import make_env

    # every input is checked before the first run, so a bad one costs nothing
    strategies, seeds = parse_strategies(args, DEFAULT_STRATEGIES), parse_seeds(args.seeds)
    env = make_env(args.env, args.scenario, seed=0)  # checks the scenario name
    config = run_config(args, env)
    check_shapes(strategies, env, config)
    paths = output_paths(args.out, args)
    table, groups = compare(args.scenario, strategies, seeds, config, kind=args.env,
                            jobs=args.jobs, progress=not args.quiet, log_groups=log_groups(args))
    speedups = write_results(paths, table, groups, args.target)
    print(format_speedups(speedups))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_leaderboard(args) -> int:
    from allocbench.compare import compare
    from allocbench.envs import make_env, scenario_names
    from allocbench.schema import writable, write_atomic

    strategies, seeds = parse_strategies(args, "all"), parse_seeds(args.seeds)
    scenarios = scenario_names(args.env) if args.scenarios == "all" else args.scenarios.split(",")
    configs, names = {}, {}
    for sc in scenarios:
        env = make_env(args.env, sc, seed=0)
        configs[sc], names[sc] = run_config(args, env), env.scenario
        check_shapes(strategies, env, configs[sc])
    if len(set(names.values())) < len(names):
        raise ConfigError(f"--scenarios: two scenarios share a name ({', '.join(names.values())}); "
                          "each writes DIR/<name>/")
    board = writable(args.out, ["leaderboard.csv", "leaderboard.md"], args.force)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {sc: output_paths(args.out / names[sc], args) for sc in scenarios}
    rows = []
    for sc in scenarios:
        table, groups = compare(sc, strategies, seeds, configs[sc], kind=args.env,
                                jobs=args.jobs, progress=not args.quiet, log_groups=log_groups(args))
        speedups = write_results(paths[sc], table, groups, args.target)
        rows.append(speedups.assign(scenario=names[sc]))
    import pandas as pd

    leaderboard = pd.concat(rows, ignore_index=True)
    write_atomic(board["leaderboard.csv"], lambda tmp: leaderboard.to_csv(tmp, index=False))
    write_atomic(board["leaderboard.md"], lambda tmp: Path(tmp).write_text(leaderboard_markdown(leaderboard)))
    print(f"wrote {board['leaderboard.csv']} and {board['leaderboard.md']}")
    return 0


def leaderboard_markdown(board) -> str:
    """One table per scenario: mean ± std over seeds of each figure of merit."""
    def pm(mean, std, scale=1.0, digits=2, unit=""):
        if mean != mean:  # NaN: never reached
            return "not reached"
        if std != std:  # one seed (or one that reached): no spread to show
            return f"{mean / scale:.{digits}f}{unit}"
        return f"{mean / scale:.{digits}f}{unit} ± {std / scale:.{digits}f}{unit}"

    def unit(values, units) -> tuple[float, str]:
        """The largest of ``units`` ((scale, suffix), ascending) not above the column's peak."""
        top = max([v for v in values if v == v] or [0.0])
        return max([u for u in units if u[0] <= top] or [units[0]], key=lambda u: u[0])

    lines = []
    for sc, rows in board.groupby("scenario", sort=False):
        r_scale, r_unit = unit(rows["rollouts_to_target"], [(1, ""), (1e3, "k"), (1e6, "M")])
        t_scale, t_unit = unit(rows["tokens_to_target"], [(1, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")])
        lines += [f"### {sc} (target {rows['target'].iloc[0]:.3f}, {int(rows['seeds'].max())} seeds)", "",
                  "| strategy | rollouts to target | seeds reached | tokens to target | vs grpo | rounds / step | final acc | runs stopped early |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows.itertuples():
            lines.append(f"| {r.strategy} | {pm(r.rollouts_to_target, r.rollouts_to_target_std, r_scale, 2, r_unit)} "
                         f"| {r.seeds_reached}/{r.seeds} "
                         f"| {pm(r.tokens_to_target, r.tokens_to_target_std, t_scale, 2, t_unit)} "
                         f"| {pm(r.speedup_vs_grpo, r.speedup_vs_grpo_std, 1, 2, 'x')} "
                         f"| {pm(r.rounds_per_step, r.rounds_per_step_std)} "
                         f"| {pm(r.final_acc, r.final_acc_std, 1, 3)} | {r.runs_stopped} |")
        lines.append("")
    return "\n".join(lines)


def format_speedups(speedups) -> str:
    cols = [c for c in ["strategy", "rollouts_to_target", "rollouts_to_target_std", "seeds_reached",
                        "speedup_vs_grpo", "speedup_vs_dapo", "final_acc", "rounds_per_step"]
            if c in speedups.columns]
    return f"target accuracy {speedups['target'].iloc[0]:.4f}\n" + speedups[cols].to_string(
        index=False, na_rep="–", float_format=lambda v: f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}")


def cmd_strategies(args) -> int:
    from allocbench.strategy import strategy_class, strategy_names

    for name in strategy_names():
        cls = strategy_class(name)
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        print(textwrap.fill(f"{name}: {summary}", width=100, subsequent_indent="    "))
        for f in dataclasses.fields(cls):
            print(f"    {f.name}: {type_name(f.type)} = {f.default!r}{valid_values(f.metadata)}")
            print(textwrap.fill(f.metadata.get("help", ""), width=100, initial_indent=" " * 8,
                                subsequent_indent=" " * 8))
        print()
    return 0


def type_name(annotation) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def valid_values(meta) -> str:
    """The valid range / choices and the tuning search space of a hyper-parameter, in words."""
    parts = []
    if meta.get("choices") is not None:
        parts.append("one of " + ", ".join(map(str, meta["choices"])))
    elif meta.get("low") is not None or meta.get("high") is not None:
        lo = "-inf" if meta.get("low") is None else f"{'(' if meta['open_low'] else '['}{meta['low']}"
        hi = "inf)" if meta.get("high") is None else f"{meta['high']}{')' if meta['open_high'] else ']'}"
        parts.append(f"in {lo}, {hi}")
    if meta.get("search") is not None:
        space = meta["search"]
        parts.append("tuned over " + (", ".join(map(str, space)) if isinstance(space[0], (str, bool))
                                      else f"[{space[0]}, {space[1]}]" + (" (log)" if meta.get("log") else "")))
    return f"  ({'; '.join(parts)})" if parts else ""


def cmd_scenarios(args) -> int:
    from sim.scenarios import get_scenario, scenario_names, to_toml, with_fields

    if args.show:
        sc = get_scenario(args.show)
        changes = scenario_changes(sc, args.sets, args.scales)
        changed = with_fields(sc, changes, f"scenario {sc.name!r}")
        if changes:  # where the file came from, as a comment (load_toml skips it)
            print(f"# {args.show} with " + ", ".join([f"--set {item}" for item in args.sets]
                                                      + [f"--scale {item}" for item in args.scales]))
        print(to_toml(changed), end="")
        return 0
    if args.sets or args.scales:
        raise ConfigError("--set and --scale change the scenario --show prints: give --show NAME")
    for name in scenario_names():
        sc = get_scenario(name)
        print(f"{name}: {sc.description} (pool {sc.pool_size:,}, B={sc.train_batch}, n={sc.group_size}, "
              f"{sc.steps} steps)")
    return 0


def scenario_changes(sc, sets: list[str], scales: list[str]) -> dict:
    """The field values ``--set FIELD=VALUE`` and ``--scale FIELD=FACTOR`` give ``sc`` (a
    factor multiplies a float field's value); one ConfigError line for a bad item."""
    from allocbench.config import parse_assignments

    changes = dict(parse_assignments(sets, "--set", "FIELD=VALUE"))
    for field, factor in parse_assignments(scales, "--scale", "FIELD=FACTOR"):
        if field in changes:
            raise ConfigError(f"--scale {field}: the field is also given by --set or another --scale; give it once")
        if field not in {f.name for f in dataclasses.fields(sc)}:
            raise ConfigError(f"--scale {field}: no scenario field {field!r}")
        current = getattr(sc, field)
        if not isinstance(current, float):
            raise ConfigError(f"--scale {field}: not a float field ({type(current).__name__}); --scale "
                              "multiplies a float field (use --set)")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < float("inf"):
            raise ConfigError(f"--scale {field}={factor!r}: the factor must be a number > 0")
        changes[field] = current * factor
    return changes
