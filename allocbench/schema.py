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
    "feature_prompts": "prompts whose features were computed in this step (feature-based strategies: pcl, gps)",
    "feature_tokens": "prompt tokens run through the policy for those features in this step (0 in sim)",
    "trained_rollouts": "rollouts in the groups trained on this step (reused ones included; rollouts aborted "
                        "by early stopping, which carry no gradient, left out)",
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
# eval_<name>, whatever else the evaluator returned: eval_acc_<benchmark> (per-benchmark accuracy
# of an evaluator with several held-out sets), eval_time_s (seconds the evaluation took, real)
OPTIONAL_PREFIXES = ("hp_", "learn_", "eval_")


# the per-group log (groups.parquet, allocbench.groups): one row per (run, step, round, prompt)
KINDS = ("pilot", "commit", "main", "reused")
# name -> meaning; then prompt_<name>: what the environment knows of the prompt when it was
# sampled (sim: prompt_pass_rate, its true pass rate; real: prompt_difficulty, e.g. the arith level)
GROUP_COLUMNS = {
    "env": "environment: sim or real",
    "scenario": "sim scenario or real preset",
    "strategy": "registered strategy name",
    "seed": "run seed",
    "step": "training step the rollouts were generated in",
    "round": "generation round within the step (1-based; 0 for reused answers)",
    "prompt_id": "prompt id in the training pool",
    "kind": "pilot (screening request), commit (main request to a prompt whose last request was a "
            "pilot), main (any other request) or reused (cached answers, not generated)",
    "n": "rollouts in the row (generated ones, or reused ones for kind reused)",
    "correct": "of those, rewarded ones (reward > 0.5)",
    "tokens": "tokens of those rollouts",
    "trained": "whether the row's rollouts went into an update",
    "trained_step": "the step whose update used them (-1 if none)",
}


def check_groups(groups: pd.DataFrame, runs: pd.DataFrame | None = None) -> None:
    """Raise ValueError when ``groups`` breaks its schema, or, given the runs table, when its
    generated rollouts or tokens do not add up to each run's final cum_rollouts / cum_tokens."""
    missing = [c for c in GROUP_COLUMNS if c not in groups.columns]
    if missing:
        raise ValueError(f"groups table lacks columns: {', '.join(missing)}")
    extra = [c for c in groups.columns if c not in GROUP_COLUMNS and not c.startswith("prompt_")]
    if extra:
        raise ValueError(f"groups table has unknown columns: {', '.join(extra)}")
    unknown = set(groups["kind"]) - set(KINDS)
    if unknown:
        raise ValueError(f"groups table has unknown kinds: {', '.join(map(str, sorted(unknown)))}")
    if runs is None:
        return
    run = ["env", "scenario", "strategy", "seed"]
    spent = groups[groups["kind"] != "reused"].groupby(run)[["n", "tokens"]].sum()
    final = runs.sort_values("step").groupby(run)[["cum_rollouts", "cum_tokens"]].last()
    joined = final.join(spent, how="left").fillna(0)
    if ((joined["n"] != joined["cum_rollouts"]) | (joined["tokens"] != joined["cum_tokens"])).any():
        raise ValueError("groups table's rollouts or tokens do not add up to the runs' cum_rollouts / cum_tokens")


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


def writable(out: Path, names: list[str], force: bool,
             hint: str = "pass --force or choose another --out") -> dict[str, Path]:
    """The paths ``names`` in folder ``out``, after checking, before anything is run or
    written, that they can be written: ``out`` and its missing parents can be made (the writer
    makes them, ``mkdir(parents=True)``), and without ``force`` none of the paths exists."""
    out = Path(out)
    for folder in [out, *out.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"output path {out}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(f"output path {out}: cannot write in {folder}")
            break
    paths = {name: out / name for name in names}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise ConfigError(f"would overwrite {shown}; {hint}")
    return paths


def write_groups(groups: pd.DataFrame, path: Path, runs: pd.DataFrame | None = None) -> None:
    check_groups(groups, runs)
    write_atomic(Path(path), lambda tmp: groups.to_parquet(tmp, index=False))


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
    for column in ("feature_prompts", "feature_tokens"):  # tables written before these columns: no features
        if column not in table.columns and "pilot_rollouts" in table.columns:
            table.insert(table.columns.get_loc("pilot_rollouts") + 1 + (column == "feature_tokens"), column, 0)
    check_table(table)
    return table
