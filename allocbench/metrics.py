"""Rollouts to a target accuracy and speed-ups, from a tidy results table (DESIGN.md:
"Rollouts to target" = the first cum_rollouts where the seed-averaged eval_acc reaches the
target; speed-up of A over B = rollouts_B / rollouts_A)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# a seed mean of 0.7, 0.7, 0.7 is 0.6999999999999998: without slack a curve that ends exactly
# at the target would reach it one evaluation late
TOLERANCE = 1e-9
# a held-out prompt counts as solved / unsolved at these pass rates (every evaluator, every figure)
SOLVED, UNSOLVED = 0.95, 0.05


def reaches(acc, target: float):
    """Whether accuracy ``acc`` (a number or an array; NaN never) counts as reaching ``target``."""
    return np.asarray(acc) >= target - TOLERANCE


def rollouts_to_target(acc: np.ndarray, x: np.ndarray, target: float) -> np.ndarray:
    """The one rollouts-to-target rule: for curves along the last axis (accuracy ``acc`` at
    spend ``x``, in step order), ``x`` at the *first* point that reaches ``target``, NaN where
    none does. A curve that crosses and falls back still reached it at the first crossing."""
    acc, x = np.asarray(acc, dtype=float), np.asarray(x, dtype=float)
    hit = reaches(np.where(np.isnan(acc), -np.inf, acc), target)
    first = hit.argmax(axis=-1)
    value = np.take_along_axis(x, first[..., None], axis=-1)[..., 0]
    return np.where(hit.any(axis=-1), value, np.nan)


def solved_shares(pass_rates: np.ndarray) -> dict:
    """The evaluators' solved / unsolved columns from per-prompt pass rates."""
    return {"eval_solved_share": float((pass_rates >= SOLVED).mean()),
            "eval_unsolved_share": float((pass_rates <= UNSOLVED).mean())}


def evaluated(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["eval_acc"].notna()]


def mean_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, step): eval_acc, cum_rollouts and cum_tokens averaged over seeds, with
    the number of seeds that have the step (a run that stopped early drops out)."""
    ev = evaluated(table)
    return (ev.groupby(["strategy", "step"], sort=True)
              .agg(eval_acc=("eval_acc", "mean"), eval_acc_std=("eval_acc", "std"),
                   cum_rollouts=("cum_rollouts", "mean"), cum_tokens=("cum_tokens", "mean"),
                   seeds=("seed", "nunique"))
              .reset_index())


def run_gains(table: pd.DataFrame) -> pd.DataFrame:
    """The evaluated rows (strategy, seed, step, cum_rollouts, eval_acc) with ``gain``: each
    run's eval_acc minus its own step-0 eval_acc (NaN for a run without one)."""
    ev = evaluated(table)[["strategy", "seed", "step", "cum_rollouts", "eval_acc"]]
    start = ev[ev["step"] == 0].set_index(["strategy", "seed"])["eval_acc"]
    return ev.assign(gain=ev["eval_acc"] - start.reindex(pd.MultiIndex.from_frame(ev[["strategy", "seed"]])).to_numpy())


def gain_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, step) evaluated after step 0: the std over seeds (ddof 1) of the held-out
    accuracy gain (``run_gains``: how far runs that differ only by their seed drift apart), the
    number of seeds (``seeds``) and the seed-mean cum_rollouts. Columns: strategy, step,
    cum_rollouts, std, seeds."""
    gains = run_gains(table)
    g = gains[gains["step"] > 0].groupby(["strategy", "step"], sort=True)
    return g.agg(cum_rollouts=("cum_rollouts", "mean"), std=("gain", "std"), seeds=("gain", "count")).reset_index()


def first_reaching(curve: pd.DataFrame, target: float, column: str = "cum_rollouts") -> float:
    """``column`` at the first row (in step order) whose eval_acc >= target; NaN if none."""
    curve = curve.sort_values("step")
    return float(rollouts_to_target(curve["eval_acc"].to_numpy(), curve[column].to_numpy(), target))


def default_target(table: pd.DataFrame, reference: str = "grpo") -> float:
    """The peak of the reference strategy's seed-averaged accuracy curve, as in the paper."""
    curve = mean_curve(table[table["strategy"] == reference])
    if curve.empty:
        raise ValueError(f"no {reference} runs in the table to take the target from; pass a target")
    return float(curve["eval_acc"].max())


def per_run(table: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per (strategy, seed): that run's rollouts and tokens to ``target`` (NaN if it
    never got there), its last evaluated accuracy and its mean generation rounds per step."""
    def one(run: pd.DataFrame) -> pd.Series:
        ev = evaluated(run)
        steps = run[run["step"] > 0]
        return pd.Series({"rollouts": first_reaching(ev, target),
                          "tokens": first_reaching(ev, target, "cum_tokens"),
                          "final_acc": float(ev.sort_values("step")["eval_acc"].iloc[-1]),
                          "rounds": float(steps["rounds"].mean()) if len(steps) else np.nan,
                          "last_step": int(run["step"].max())})
    return table.groupby(["strategy", "seed"], sort=False).apply(one, include_groups=False).reset_index()


def speedup_table(table: pd.DataFrame, target: float,
                  references: tuple[str, ...] = ("grpo", "dapo")) -> pd.DataFrame:
    """One row per strategy, in the order they were run: rollouts and tokens to ``target`` on
    the seed-averaged curve, their spread over seeds (std of the per-seed values, among seeds
    that reached it), runs that stopped before the others' last step (a filter that could
    not fill its batch), final accuracy and generation rounds per step with their spread, and
    speed-ups against each reference present in the table.

    ``speedup_vs_X`` is rollouts_X / rollouts_strategy on the seed-averaged curves;
    ``speedup_vs_X_std`` is the spread of the same ratio over seeds paired by seed number,
    among seeds where both reached the target.
    """
    curves = mean_curve(table)
    runs = per_run(table, target)
    seeds = runs.pivot(index="seed", columns="strategy", values="rollouts")
    rows = []
    for name in table["strategy"].unique():
        curve, mine = curves[curves["strategy"] == name], runs[runs["strategy"] == name]
        rows.append({"strategy": name, "target": target,
                     "rollouts_to_target": first_reaching(curve, target),
                     "rollouts_to_target_std": float(mine["rollouts"].std()),
                     "tokens_to_target": first_reaching(curve, target, "cum_tokens"),
                     "tokens_to_target_std": float(mine["tokens"].std()),
                     "seeds_reached": int(mine["rollouts"].notna().sum()), "seeds": len(mine),
                     "runs_stopped": int((mine["last_step"] < runs["last_step"].max()).sum()),
                     "final_acc": float(mine["final_acc"].mean()),
                     "final_acc_std": float(mine["final_acc"].std()),
                     "rounds_per_step": float(mine["rounds"].mean()),
                     "rounds_per_step_std": float(mine["rounds"].std())})
    out = pd.DataFrame(rows)
    for ref in references:
        if ref not in set(out["strategy"]):
            continue
        ref_rollouts = out.loc[out["strategy"] == ref, "rollouts_to_target"].iloc[0]
        out[f"speedup_vs_{ref}"] = ref_rollouts / out["rollouts_to_target"]
        out[f"speedup_vs_{ref}_std"] = [float((seeds[ref] / seeds[s]).std()) for s in out["strategy"]]
    return out
