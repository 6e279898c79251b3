"""The tidy result schema: one row per (run, step), shared by sim and real."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from allocbench.errors import ConfigError

# name -> meaning; the order is the column order of every results table
COLUMNS = {
    "env": "environment: sim or real",
    "scenario": "sim scenario or real preset",
    "strategy": "registered strategy name",
    "seed": "run seed",
    "step": "training step; 0 is the evaluation before training",
    "train_batch": "prompts per step (B) of the run",
    "group_size": "the baseline's rollouts per prompt (n) of the run",
    "epoch": "data-loader epoch the step ended in",
    "cum_rollouts": "rollouts generated so far (ledger), filtered and pilot ones included",
    "cum_tokens": "tokens generated so far (ledger)",
    "step_rollouts": "rollouts generated in this step",
    "pilot_rollouts": "of those, rollouts spent on screening (pilot) requests",
    "trained_rollouts": "rollouts in the groups trained on this step (reused ones included)",
    "reused_rollouts": "rollouts trained on that were not generated (cached answers)",
    "rounds": "generation rounds (batched sampler calls) in this step",
    "prompts_seen": "prompt requests served in this step",
    "prompts_trained": "groups trained on in this step",
    "zero_var_groups": "trained groups whose rewards were all equal (no gradient)",
    "train_reward": "mean reward of the trained rollouts",
    "group_reward_var": "mean over trained groups of the group's reward variance",
    "eval_acc": "held-out accuracy; NaN on steps without an evaluation",
    "eval_solved_share": "share of held-out prompts with pass rate >= 0.95 (NaN if not evaluated)",
    "eval_unsolved_share": "share of held-out prompts with pass rate <= 0.05 (NaN if not evaluated)",
    "wall_s": "seconds since the run started",
}
KEY = ["env", "scenario", "strategy", "seed", "step"]
# besides COLUMNS: hp_<name> (the strategy's resolved hyper-parameters), learn_<name> (what
# the environment's Learner.update returned: the sim's advantage signal, a real loss, ...) and
# eval_acc_<benchmark> (per-benchmark accuracy of an evaluator with several held-out sets)
OPTIONAL_PREFIXES = ("hp_", "learn_", "eval_acc_")


def check_table(table: pd.DataFrame) -> None:
    """Raise ValueError when ``table`` breaks the schema."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks columns: {', '.join(missing)}")
    extra = [c for c in table.columns if c not in COLUMNS and not c.startswith(OPTIONAL_PREFIXES)]
    if extra:
        raise ValueError(f"results table has unknown columns: {', '.join(extra)}")
    if table.duplicated(KEY).any():
        raise ValueError("results table has more than one row for some (run, step)")
    for _, run in table.groupby(["env", "scenario", "strategy", "seed"], sort=False):
        if (run["cum_rollouts"].diff().dropna() < 0).any():
            raise ValueError("cum_rollouts decreases within a run")


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write) -> None:
    """Write a file through ``write(tmp_path)`` and move it into place in one rename, so a
    crash never leaves a partial file under ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writable(out: Path, names: list[str], force: bool) -> dict[str, Path]:
    """The files ``names`` in folder ``out`` (created later by the writer; its parent must
    exist), after checking they can be written and, without ``force``, that none exists."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"output folder's parent does not exist: {out.parent}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path is a file, not a folder: {out}")
    paths = {name: out / name for name in names}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise ConfigError(f"would overwrite {', '.join(existing)}; pass --force or choose another --out")
    return paths


def write_table(table: pd.DataFrame, path: Path) -> None:
    check_table(table)
    path = Path(path)
    if path.suffix == ".csv":
        write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))
    else:
        write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    check_table(table)
    return table
