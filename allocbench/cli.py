"""The ``allocbench`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import tomllib
from pathlib import Path

from allocbench.errors import AllocbenchError, ConfigError

DEFAULT_STRATEGIES = "grpo,dapo,pilot_commit"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (AllocbenchError, FileNotFoundError, tomllib.TOMLDecodeError) as e:
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allocbench: interrupted; nothing was written", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allocbench",
        description="Compare rollout-allocation strategies for GRPO-style RL post-training.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("compare", help="run strategies x seeds on one scenario; write table, figure, speed-ups",
                       description="Run each strategy on each seed and write DIR/runs.parquet (one row per run "
                       "x step), DIR/accuracy_vs_rollouts.png and DIR/speedup.csv (rollouts to the target "
                       "accuracy and speed-ups against grpo and dapo).")
    p.add_argument("--scenario", default="default", help="scenario name (see `allocbench scenarios`); default: default")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help=f"comma-separated strategy names, or 'all'; default: {DEFAULT_STRATEGIES}")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1; default: 5")
    p.add_argument("--steps", type=int, default=None, help="training steps per run; default: the scenario's")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; its parent must exist)")
    p.add_argument("--target", type=float, default=None,
                   help="target held-out accuracy; default: the peak of grpo's seed-mean curve")
    p.add_argument("--budget", type=int, default=None, help="total rollouts per run (equal-budget comparison)")
    p.add_argument("--train-batch", type=int, default=None, help="prompts per step B; default: the scenario's")
    p.add_argument("--group-size", type=int, default=None, help="baseline rollouts per prompt n; default: the scenario's")
    p.add_argument("--eval-every", type=int, default=10, help="steps between evaluations; default: 10")
    p.add_argument("--set", dest="hp", action="append", default=[], metavar="STRATEGY.PARAM=VALUE",
                   help="set a hyper-parameter, e.g. pilot_commit.pilot_fraction=0.3 (repeatable)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file: [strategies.NAME] tables of hyper-parameters (--set wins)")
    p.add_argument("--env", default="sim", help="environment: sim (default) or real")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes; default: 1")
    p.add_argument("--csv", action="store_true", help="also write DIR/runs.csv")
    p.add_argument("--force", action="store_true", help="replace existing result files in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("strategies", help="list strategies with their hyper-parameters and defaults")
    p.set_defaults(func=cmd_strategies)
    p = sub.add_parser("scenarios", help="list simulator scenarios")
    p.set_defaults(func=cmd_scenarios)
    return parser


def parse_value(text: str):
    """A --set value as TOML would read it (numbers, booleans, strings)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def strategy_params(names: list[str], config: Path | None, sets: list[str]) -> dict[str, dict]:
    params: dict[str, dict] = {name: {} for name in names}
    if config is not None:
        with open(config, "rb") as f:
            table = tomllib.load(f).get("strategies", {})
        for name, values in table.items():
            if name in params:
                params[name].update(values)
    for item in sets:
        key, sep, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set expects STRATEGY.PARAM=VALUE, got {item!r}")
        if name not in params:
            raise ConfigError(f"--set {item!r}: strategy {name!r} is not among --strategies")
        params[name][param] = parse_value(value)
    return params


def output_paths(out: Path, csv: bool) -> dict[str, Path]:
    names = ["runs.parquet", "accuracy_vs_rollouts.png", "speedup.csv"] + (["runs.csv"] if csv else [])
    return {name: out / name for name in names}


def cmd_compare(args) -> int:
    from allocbench.compare import compare
    from allocbench.envs import make_env
    from allocbench.metrics import default_target, speedup_table
    from allocbench.runner import RunConfig
    from allocbench.schema import write_atomic, write_table
    from allocbench.strategy import make_strategy, strategy_names

    # every input is checked before the first run, so a bad one costs nothing
    names = strategy_names() if args.strategies == "all" else [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        raise ConfigError("--strategies is empty")
    params = strategy_params(names, args.config, args.hp)
    strategies = [make_strategy(name, **params[name]) for name in names]
    if args.seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {args.seeds}")
    if args.jobs <= 0:
        raise ConfigError(f"--jobs must be positive, got {args.jobs}")
    if args.target is not None and not 0 < args.target <= 1:
        raise ConfigError(f"--target must be in (0, 1], got {args.target}")
    if args.target is None and "grpo" not in names:
        raise ConfigError("the default target is grpo's peak accuracy: include grpo or pass --target")
    env = make_env(args.env, args.scenario, seed=0)  # checks the scenario name
    config = RunConfig(steps=args.steps or env.info.get("steps", 200), train_batch=args.train_batch,
                       group_size=args.group_size, eval_every=args.eval_every, budget=args.budget)
    out = args.out
    if not out.parent.is_dir():
        raise ConfigError(f"output folder's parent does not exist: {out.parent}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out is a file, not a folder: {out}")
    paths = output_paths(out, args.csv)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not args.force:
        raise ConfigError(f"would overwrite {', '.join(existing)}; pass --force or choose another --out")

    table = compare(args.scenario, strategies, list(range(args.seeds)), config, kind=args.env,
                    jobs=args.jobs, progress=not args.quiet)
    target = args.target if args.target is not None else default_target(table)
    speedups = speedup_table(table, target)
    from analysis.figures import accuracy_vs_rollouts  # the CLI composes; the core draws nothing

    png = io.BytesIO()
    accuracy_vs_rollouts(table, target).savefig(png, format="png", dpi=150)

    out.mkdir(exist_ok=True)
    write_table(table, paths["runs.parquet"])
    if args.csv:
        write_table(table, paths["runs.csv"])
    write_atomic(paths["accuracy_vs_rollouts.png"], lambda tmp: Path(tmp).write_bytes(png.getvalue()))
    write_atomic(paths["speedup.csv"], lambda tmp: speedups.to_csv(tmp, index=False))
    print(format_speedups(speedups))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def format_speedups(speedups) -> str:
    cols = [c for c in ["strategy", "rollouts_to_target", "rollouts_to_target_std", "seeds_reached",
                        "speedup_vs_grpo", "speedup_vs_dapo", "final_acc", "rounds_per_step"]
            if c in speedups.columns]
    return f"target accuracy {speedups['target'].iloc[0]:.4f}\n" + speedups[cols].to_string(
        index=False, float_format=lambda v: f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}")


def cmd_strategies(args) -> int:
    from allocbench.strategy import strategy_class, strategy_names

    for name in strategy_names():
        cls = strategy_class(name)
        print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for f in dataclasses.fields(cls):
            print(f"    {f.name} = {f.default!r}  ({f.type}) {f.metadata.get('help', '')}")
    return 0


def cmd_scenarios(args) -> int:
    from sim.scenarios import get_scenario, scenario_names

    for name in scenario_names():
        sc = get_scenario(name)
        print(f"{name}: {sc.description} (pool {sc.pool_size:,}, B={sc.train_batch}, n={sc.group_size}, "
              f"{sc.steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
