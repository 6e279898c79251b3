"""``allocbench train``: one strategy, one seed, the real GRPO loop.

    allocbench train --preset tiny-arith --strategy pilot_commit --seed 0 --steps 20 --out runs/pc0

Writes DIR/runs.parquet (the tidy schema, env = real), DIR/groups.parquet (the per-group log),
DIR/preset.toml (the preset with every
override, loadable with --preset DIR/preset.toml) and DIR/checkpoint/ (the latest checkpoint;
--resume continues from it after an interruption).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from allocbench.errors import ConfigError, DataTooHard


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train one strategy with the real GRPO loop (torch, vLLM generation) on a preset",
        description="Run one strategy on one seed of a real preset (see --list-presets) and write "
        "DIR/runs.parquet, DIR/groups.parquet, DIR/preset.toml and DIR/checkpoint/.")
    p.add_argument("--preset", default=None, help="preset name or TOML file (see --list-presets)")
    p.add_argument("--strategy", default=None, help="strategy name (see `allocbench strategies`)")
    p.add_argument("--seed", type=int, default=0, help="run seed; default: 0")
    p.add_argument("--steps", type=int, default=None, help="training steps; default: the preset's")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder; default: runs/<preset>-<strategy>-seed<seed>")
    p.add_argument("--set", dest="hp", action="append", default=[], metavar="STRATEGY.PARAM=VALUE",
                   help="set a strategy hyper-parameter, e.g. pilot_commit.pilot_n=4 (repeatable)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file: [strategies.NAME] tables of hyper-parameters (--set wins)")
    p.add_argument("--env-set", dest="env_set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a preset field, e.g. learner.lr=1e-4 or generation.max_new_tokens=32 "
                   "(sections: model, generation, data, learner, eval, verifier, run; repeatable)")
    p.add_argument("--backend", choices=("auto", "torch", "vllm"), default=None,
                   help="generation backend (= --env-set generation.backend=...); default: the preset's "
                   "(auto: vllm where vLLM imports and a GPU is present, else torch)")
    p.add_argument("--train-batch", type=int, default=None, help="prompts per step B; default: the preset's")
    p.add_argument("--group-size", type=int, default=None, help="rollouts per prompt n; default: the preset's")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations; default: the preset's")
    p.add_argument("--budget", type=int, default=None, help="total rollouts (the run ends before overspending)")
    p.add_argument("--checkpoint-every", type=int, default=10,
                   help="steps between checkpoints in DIR/checkpoint (the last step always); 0: none")
    p.add_argument("--resume", action="store_true", help="continue the run from DIR/checkpoint")
    p.add_argument("--force", action="store_true", help="replace DIR's results and checkpoint")
    p.add_argument("--csv", action="store_true", help="also write DIR/runs.csv")
    p.add_argument("--quiet", action="store_true", help="no per-step lines")
    p.add_argument("--list-presets", action="store_true", help="list the real presets and exit")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    if args.list_presets:
        from real.presets import PRESETS

        for name, preset in PRESETS.items():
            r = preset.run
            print(f"{name}: {preset.description} (model {preset.model.name}, data {preset.data.train}, "
                  f"B={r.train_batch}, n={r.group_size}, {r.steps} steps)")
        return 0
    if args.preset is None or args.strategy is None:
        raise ConfigError("train needs --preset and --strategy (or --list-presets)")
    from allocbench.checkpoint import Checkpoint
    from allocbench.config import parse_assignments, strategy_params
    from allocbench.runner import RunConfig, run
    from allocbench.groups import GroupLog
    from allocbench.schema import writable, write_atomic, write_groups, write_table
    from allocbench.strategy import make_strategy
    from real.presets import get_preset, to_toml

    # every input is checked before the environment (a model load) is built
    strategy = make_strategy(args.strategy, **strategy_params([args.strategy], args.config, args.hp)[args.strategy])
    overrides = dict(parse_assignments(args.env_set, "--env-set", "SECTION.FIELD=VALUE", dotted=True))
    if args.backend is not None:
        overrides["generation.backend"] = args.backend
    preset = get_preset(args.preset, **overrides)
    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.resume and args.force:
        raise ConfigError("--resume and --force exclude each other")
    # under torchrun every rank runs the loop (docs/scale.md); rank 0 alone writes and reports
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and (args.checkpoint_every or args.resume):
        if args.resume:
            raise ConfigError("--resume is not available under torchrun (no checkpoints with several ranks)")
        if rank == 0:
            print("allocbench: note: no checkpoints under torchrun with several ranks", file=sys.stderr)
        args.checkpoint_every = 0
    if rank != 0:
        args.quiet, args.csv = True, False
    out = args.out or Path("runs") / f"{preset.name}-{strategy.name}-seed{args.seed}"
    ckpt_dir = out / "checkpoint"
    has_ckpt = (ckpt_dir / "latest").exists()
    if args.resume and not has_ckpt:
        raise ConfigError(f"nothing to resume: {ckpt_dir} holds no checkpoint")
    replace = args.force or args.resume or rank != 0
    hint = "pass --force to start over" + (" or --resume to continue" if has_ckpt else "")
    if has_ckpt and not replace:
        raise ConfigError(f"would overwrite {ckpt_dir}; {hint}")
    files = writable(out, ["runs.parquet", "groups.parquet", "preset.toml"] + (["runs.csv"] if args.csv else []),
                     force=replace, hint=hint)
    if args.force and ckpt_dir.exists() and rank == 0:
        shutil.rmtree(ckpt_dir)
    config = RunConfig(steps=preset.run.steps if args.steps is None else args.steps, seed=args.seed,
                       train_batch=args.train_batch, group_size=args.group_size,
                       eval_every=preset.run.eval_every if args.eval_every is None else args.eval_every,
                       budget=args.budget)

    from real import make_env

    started = time.perf_counter()
    if rank == 0:
        print(f"building {preset.name} (seed {args.seed}) ...", file=sys.stderr)
    env = make_env(args.preset, seed=args.seed, **overrides)
    if rank == 0:
        print(f"ready in {time.perf_counter() - started:.1f}s; training {strategy.name} for {config.steps} steps",
              file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
    checkpoint = Checkpoint(ckpt_dir, every=args.checkpoint_every) if args.checkpoint_every else None
    groups = GroupLog()  # a real run always keeps its per-group log (it is small)
    try:
        table = run(env, strategy, config, on_step=None if args.quiet else _progress(config.steps),
                    checkpoint=checkpoint, groups=groups)
    except DataTooHard as e:  # as compare does: keep the rows up to the failing step, say why
        if e.table is None or len(e.table) == 0:
            raise
        print(f"allocbench: warning: the run stopped early: {e}", file=sys.stderr)
        table = e.table
    if rank != 0:
        return 0
    write_atomic(files["preset.toml"], lambda tmp: Path(tmp).write_text(to_toml(preset)))
    write_table(table, files["runs.parquet"])
    write_groups(groups.table(through_step=int(table.step.max())), files["groups.parquet"], table)
    if args.csv:
        write_table(table, files["runs.csv"])
    evals = table.dropna(subset=["eval_acc"])
    print(f"{strategy.name} on {preset.name}, seed {args.seed}: eval_acc {evals.eval_acc.iloc[0]:.3f} -> "
          f"{evals.eval_acc.iloc[-1]:.3f} after {int(table.step.iloc[-1])} steps, "
          f"{int(table.cum_rollouts.iloc[-1]):,} rollouts, {table.wall_s.iloc[-1]:.1f}s")
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


def _progress(steps: int):
    def show(row: dict) -> None:
        acc = row["eval_acc"]
        print(f"step {row['step']:>4}/{steps}  rollouts {row['cum_rollouts']:>7,}  rounds {row['rounds']}  "
              f"reward {row['train_reward']:.3f}  loss {row.get('learn_loss', float('nan')):+.4f}  "
              f"gen {row.get('learn_time_gen_s', 0.0):.2f}s  learn {row.get('learn_time_learn_s', 0.0):.2f}s"
              + (f"  eval_acc {acc:.3f}" if acc == acc else ""), file=sys.stderr, flush=True)
    return show
