"""``allocbench probe``: every training prompt's pass rate under a policy, before or after
training."""

from __future__ import annotations

import io
from pathlib import Path

from allocbench.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "probe", help="measure every training prompt's pass rate under the initial (or a trained) policy",
        description="Sample every training prompt of a scenario K times (batched generation rounds) "
        "under the initial policy, or under the last checkpoint of an `allocbench train` run "
        "(--from RUN_DIR), and write DIR/probe.parquet (one row per prompt: correct of K, pass "
        "rate, what the environment knows of the prompt, the out-of-fold prediction of its pass-rate "
        "logit from the prompt features where the environment has them) and DIR/pass_rates.png (the distribution "
        "of pass rates per difficulty level; with --before, before vs after). In the simulator "
        "the table also holds each prompt's true pass rate.")
    p.add_argument("--env", default="sim", help="environment: sim (default) or real")
    p.add_argument("--scenario", default=None,
                   help="scenario (sim) or preset (real); default: the run's preset with --from, else default / tiny-arith")
    p.add_argument("--from", dest="run", type=Path, default=None,
                   help="an `allocbench train` output folder: probe its last checkpoint's policy (real)")
    p.add_argument("--k", type=int, default=16, help="samples per prompt; default: 16")
    p.add_argument("--seed", type=int, default=0, help="environment seed; default: 0")
    p.add_argument("--batch", type=int, default=256, help="prompts per generation round; default: 256")
    p.add_argument("--before", type=Path, default=None,
                   help="another probe's probe.parquet to draw as 'before' in the figure")
    p.add_argument("--out", type=Path, required=True, help="output folder (created with its parents)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args) -> int:
    import pandas as pd
    from allocbench.progress import progress_bar

    from allocbench.checkpoint import Checkpoint
    from allocbench.envs import make_env
    from allocbench.probe import check_k, feature_r2, probe
    from allocbench.schema import writable, write_atomic

    check_k(args.k)  # before any environment is built
    scenario = args.scenario
    env_state = None
    if args.run is not None:
        if args.env != "real":
            raise ConfigError("--from reads an `allocbench train` run: use it with --env real")
        env_state = Checkpoint(args.run / "checkpoint").latest()
        if env_state is None or not (env_state / "env").is_dir():
            raise ConfigError(f"--from {args.run}: no checkpoint there (expected {args.run / 'checkpoint' / 'latest'}, "
                              "written by `allocbench train`)")
        scenario = scenario or str(args.run / "preset.toml")
    scenario = scenario or ("tiny-arith" if args.env == "real" else "default")
    before = None
    if args.before is not None:
        if not args.before.is_file():
            raise ConfigError(f"--before: no such file: {args.before}")
        before = pd.read_parquet(args.before)
    paths = writable(args.out, ["probe.parquet", "pass_rates.png"], args.force)
    env = make_env(args.env, scenario, seed=args.seed)
    if env_state is not None:
        if env.load is None:
            raise ConfigError(f"environment {args.env} cannot load checkpoints")
        env.load(env_state / "env")
    bar = progress_bar(total=len(env.prompt_ids), unit="prompt", disable=args.quiet,
                       desc=f"probe {env.scenario}, k={args.k}")
    table = probe(env, args.k, batch_prompts=args.batch, progress=bar.update)
    bar.close()
    table["source"] = "initial policy" if env_state is None else f"checkpoint {env_state.name}"

    from analysis.figures import pass_rate_histogram

    png = io.BytesIO()
    pass_rate_histogram(table, before).savefig(png, format="png", dpi=200)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(paths["probe.parquet"], lambda tmp: table.to_parquet(tmp, index=False))
    write_atomic(paths["pass_rates.png"], lambda tmp: Path(tmp).write_bytes(png.getvalue()))
    rate = table["pass_rate"]
    print(f"{len(table):,} prompts, k={args.k}: mean pass rate {rate.mean():.3f}; all wrong {(rate == 0).mean():.1%}, "
          f"all right {(rate == 1).mean():.1%}, in between {((rate > 0) & (rate < 1)).mean():.1%}")
    if "feature_pred" in table:
        print(f"the prompt features predict the pass-rate logits with out-of-fold R^2 {feature_r2(table):.3f} "
              "(ridge; `calibrate --probe` matches the simulator's feature_noise to it)")
    print(f"wrote {paths['probe.parquet']}, {paths['pass_rates.png']}")
    return 0
