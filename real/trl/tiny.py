"""The TRL plug-in on allocbench's real presets (the tiny-arith model on CPU): the pieces a TRL
run needs (a Hugging Face folder of the model, the data as a ``datasets.Dataset``, the verifier
as a reward function, a ``GRPOConfig`` set like the preset's own learner) and ``main``, which
runs strategies x seeds through ``AllocGRPOTrainer`` into one results table.

``python -m real.trl --strategies grpo,pilot_commit --seeds 3 --steps 200 --eval-every 10 --out
results/trl/plugin`` is the agreement experiment of results/trl: the same model, data, seeds,
verifier and evaluator as ``allocbench compare --env real --scenario tiny-arith`` (with the same
options), trained by TRL instead of allocbench's own loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from transformers import PrinterCallback
from trl import GRPOConfig

from allocbench.config import strategy_params
from allocbench.errors import AllocbenchError, ConfigError, DataTooHard
from allocbench.schema import writable, write_groups, write_table
from allocbench.strategy import make_strategy
from real import presets as P
from real.trl.trainer import AllocGRPOTrainer

TINY_FOLDER = "tiny-arith-v1-hf"  # the shipped tiny-arith weights as a transformers folder, in the cache


def export_tiny_arith(folder: str | Path | None = None) -> Path:
    """The tiny-arith model (real/weights' tiny-arith-v1) and its tokenizer as a Hugging Face
    folder that ``GRPOTrainer(model=folder)`` loads; made once (default: in allocbench's cache,
    ``real.policy.cache_dir()``)."""
    from real.policy import cache_dir, load_policy, write_folder

    folder = Path(folder) if folder is not None else cache_dir() / "models" / TINY_FOLDER
    if (folder / "config.json").exists():
        return folder
    policy = load_policy(P.get_preset("tiny-arith").model)
    return write_folder(policy.model, policy.tokenizer, folder)


def prompt_dataset(problems, template: str = "{question}"):
    """Problems (``real.data.Problem``) as TRL's prompt dataset: ``prompt`` (the question through
    the preset's ``model.prompt_template``) and ``answer``, which the reward function reads."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [template.format(question=p.question) for p in problems],
                              "answer": [p.answer for p in problems]})


def verifier_reward(verifier=None):
    """A TRL reward function scoring completions against the dataset's ``answer`` column with
    allocbench's math verifier (``real.verifier.MathVerifier``; the tiny-arith preset's when None):
    1.0 right, 0.0 wrong."""
    if verifier is None:
        from real.verifier import MathVerifier

        v = P.get_preset("tiny-arith").verifier
        verifier = MathVerifier(v.timeout_s, v.require_boxed, v.isolation)

    def correct(completions, answer, **_) -> list[float]:
        return verifier.score_many(completions, answer).tolist()

    return correct


def unsupported(preset: P.Preset) -> str | None:
    """Why TRL cannot run ``preset`` as allocbench's own loop does (None when it can): chat prompts
    (``prompt_dataset`` makes plain-text ones) or learner settings without a TRL counterpart here."""
    if preset.model.chat:
        return f"preset {preset.name} has chat prompts; the TRL runs here take plain-text prompts (such as tiny-arith's)"
    lr = preset.learner
    unmapped = [f"learner.{name}={getattr(lr, name)!r}" for name, plain in [
        ("loss_agg", "token-mean"), ("mini_batches", 1), ("lr_warmup_steps", 0), ("fsdp", False)]
        if getattr(lr, name) != plain]
    return f"preset {preset.name}: {', '.join(unmapped)} has no TRL setting here" if unmapped else None


def grpo_config(preset: P.Preset, seed: int, steps: int, output_dir: str | Path, **overrides) -> GRPOConfig:
    """TRL's settings for the preset's run: its B prompts x n rollouts per step and sampling, and
    its learner's objective (token-mean clipped surrogate with clip-higher, ``loss_type="dapo"``;
    AdamW at a constant learning rate; gradient clipping; one optimizer step per step; gradient
    checkpointing only where the preset asks for it, while TRL turns it on by default).
    ``overrides`` are further ``GRPOConfig`` fields."""
    why = unsupported(preset)
    if why:
        raise ConfigError(why)
    g, lr = preset.generation, preset.learner
    settings = dict(
        output_dir=str(output_dir), seed=seed, max_steps=steps,
        per_device_train_batch_size=preset.run.train_batch * preset.run.group_size,
        num_generations=preset.run.group_size, max_completion_length=g.max_new_tokens,
        temperature=g.temperature, top_p=g.top_p, loss_type="dapo", beta=lr.kl_coef,
        scale_rewards="group" if lr.norm_adv_by_std else "none", epsilon=lr.eps_low, epsilon_high=lr.eps_high,
        learning_rate=lr.lr, lr_scheduler_type="constant", adam_beta1=lr.beta1, adam_beta2=lr.beta2,
        weight_decay=lr.weight_decay, max_grad_norm=lr.max_grad_norm,
        gradient_checkpointing=preset.model.gradient_checkpointing, logging_steps=1, report_to="none",
        save_strategy="no", disable_tqdm=True)
    return GRPOConfig(**{**settings, **overrides})


def train_one(scenario: str, strategy, seed: int, steps: int, eval_every: int, output_dir: Path):
    """One run of ``strategy`` on the real preset ``scenario`` through the plug-in, on the
    environment ``real.make_env`` builds (model, data, verifier, evaluator). Returns its trainer
    and, for a filtering strategy that could not fill its batch (``DataTooHard``), why it stopped
    early: as in ``allocbench compare``, the run keeps its rows up to there."""
    from real import make_env

    env = make_env(scenario, seed=seed)
    world, preset = env.info["world"], env.info["preset"]
    args = grpo_config(preset, seed, steps, output_dir, use_cpu=world.policy.device.type == "cpu")
    trainer = AllocGRPOTrainer(
        model=world.policy.model, processing_class=world.policy.tokenizer, args=args,
        reward_funcs=verifier_reward(world.verifier),
        train_dataset=prompt_dataset(world.train, world.policy.cfg.prompt_template),
        strategy=strategy, evaluator=env.evaluator.evaluate, eval_every=eval_every,
        results_dir=output_dir, scenario=preset.name)
    trainer.remove_callback(PrinterCallback)  # TRL's metrics are in the results table; one line per run instead
    try:
        trainer.train()
    except DataTooHard as e:
        return trainer, f"{strategy.name} seed {seed}: {e}"
    return trainer, None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m real.trl",
        description="Train allocbench strategies inside TRL's GRPOTrainer (the AllocGRPOTrainer plug-in) on a real "
        "preset, each strategy on each seed, and write OUT/runs.parquet (one row per run x step, allocbench's "
        "schema, env 'trl') and OUT/groups.parquet. The model, training pool, held-out set, verifier and "
        "evaluator are those of `allocbench compare --env real --scenario SCENARIO` for the same seed, and TRL "
        "is set like the preset's learner (AdamW at a constant learning rate, clip-higher, token-mean loss), so "
        "the two tables compare the plug-in with allocbench's own loop. Prints one line per finished run; a "
        "filtering strategy that cannot fill its batch keeps its steps so far, with a warning.")
    p.add_argument("--scenario", default="tiny-arith",
                   help="real preset name or TOML file with plain-text prompts; default: tiny-arith")
    p.add_argument("--strategies", default="grpo,pilot_commit", help="comma-separated strategy names; "
                   "default: grpo,pilot_commit")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1; default: 3")
    p.add_argument("--steps", type=int, default=None, help="training steps per run; default: the preset's")
    p.add_argument("--eval-every", type=int, default=None,
                   help="steps between held-out evaluations (step 0 and the last always); default: the preset's")
    p.add_argument("--set", dest="hp", action="append", default=[], metavar="STRATEGY.PARAM=VALUE",
                   help="set a hyper-parameter, e.g. pilot_commit.pilot_fraction=0.3 (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created with its parents)")
    p.add_argument("--force", action="store_true", help="replace existing result files in OUT")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # transformers' deprecation notices about TRL's own calls say nothing about this run
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        return run(args)
    except (AllocbenchError, FileNotFoundError) as e:
        print(f"python -m real.trl: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    # every input is checked before the first run, so a bad one costs nothing
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        raise ConfigError("--strategies is empty")
    params = strategy_params(names, None, args.hp)
    strategies = [make_strategy(name, **params[name]) for name in names]
    if args.seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {args.seeds}")
    preset = P.get_preset(args.scenario)
    if unsupported(preset):
        raise ConfigError(unsupported(preset))
    steps = preset.run.steps if args.steps is None else args.steps
    eval_every = preset.run.eval_every if args.eval_every is None else args.eval_every
    for flag, value in [("--steps", steps), ("--eval-every", eval_every)]:
        if value <= 0:
            raise ConfigError(f"{flag} must be positive, got {value}")
    for strategy in strategies:
        strategy.bind(preset.run.train_batch, preset.run.group_size)
    paths = writable(args.out, ["runs.parquet", "groups.parquet"], args.force)
    tables, groups = [], []
    for strategy in strategies:
        for seed in range(args.seeds):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="allocbench-trl-") as tmp:
                trainer, problem = train_one(args.scenario, strategy, seed, steps, eval_every, Path(tmp))
            table = trainer.table()
            tables.append(table)
            groups.append(trainer.groups_log.table(through_step=int(table.step.max())))
            last, acc = table.iloc[-1], table.eval_acc.dropna()
            print(f"{strategy.name} seed {seed}: {int(last.step)} steps, {int(last.cum_rollouts):,} rollouts, held-out "
                  f"accuracy {acc.iloc[0]:.3f} -> {acc.iloc[-1]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
            if problem:
                print(f"python -m real.trl: warning: {problem}", file=sys.stderr, flush=True)
    table = pd.concat(tables, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(table, paths["runs.parquet"])
    write_groups(pd.concat(groups, ignore_index=True), paths["groups.parquet"], table)
    print(f"wrote {paths['runs.parquet']} and {paths['groups.parquet']}")
    return 0
