"""Rollouts to a target accuracy and speed-ups, from a tidy results table (DESIGN.md:
"Rollouts to target" = the first cum_rollouts where the seed-averaged eval_acc reaches the
target; speed-up of A over B = rollouts_B / rollouts_A)."""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN = ["env", "scenario", "strategy", "seed"]


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


def first_reaching(curve: pd.DataFrame, target: float, column: str = "cum_rollouts") -> float:
    """``column`` at the first row (in step order) whose eval_acc >= target; NaN if none."""
    hit = curve[curve["eval_acc"] >= target]
    return float(hit.sort_values("step")[column].iloc[0]) if len(hit) else float("nan")


def default_target(table: pd.DataFrame, reference: str = "grpo") -> float:
    """The peak of the reference strategy's seed-averaged accuracy curve, as in the paper."""
    curve = mean_curve(table[table["strategy"] == reference])
    if curve.empty:
        raise ValueError(f"no {reference} runs in the table to take the target from; pass a target")
    return float(curve["eval_acc"].max())


def speedup_table(table: pd.DataFrame, target: float,
                  references: tuple[str, ...] = ("grpo", "dapo")) -> pd.DataFrame:
    """One row per strategy: rollouts and tokens to ``target`` on the seed-averaged curve, the
    per-seed spread, and speed-ups against each reference present in the table.

    ``speedup_vs_X`` is rollouts_X / rollouts_strategy on the seed-averaged curves;
    ``speedup_vs_X_std`` is the spread of the same ratio over seeds paired by seed number,
    among seeds where both reached the target.
    """
    curves = mean_curve(table)
    ev = evaluated(table)
    per_seed = (ev.groupby(["strategy", "seed"])
                  .apply(lambda run: first_reaching(run, target), include_groups=False)
                  .rename("rollouts").reset_index())
    seeds = per_seed.pivot(index="seed", columns="strategy", values="rollouts")
    last = table.sort_values("step").groupby(RUN).tail(1)
    final_acc = evaluated(last).groupby("strategy")["eval_acc"]
    rounds = table[table["step"] > 0].groupby("strategy")["rounds"].mean()
    rows = []
    for name in table["strategy"].unique():  # in the order the strategies were run
        curve = curves[curves["strategy"] == name]
        row = {"strategy": name, "target": target,
               "rollouts_to_target": first_reaching(curve, target),
               "tokens_to_target": first_reaching(curve, target, "cum_tokens"),
               "rollouts_to_target_std": float(seeds[name].std()),
               "seeds_reached": int(seeds[name].notna().sum()), "seeds": int(curve["seeds"].max()),
               "final_acc": float(final_acc.mean().get(name, np.nan)),
               "final_acc_std": float(final_acc.std().get(name, np.nan)),
               "rounds_per_step": float(rounds.get(name, np.nan))}
        rows.append(row)
    out = pd.DataFrame(rows)
    for ref in references:
        if ref not in set(out["strategy"]):
            continue
        ref_rollouts = out.loc[out["strategy"] == ref, "rollouts_to_target"].iloc[0]
        out[f"speedup_vs_{ref}"] = ref_rollouts / out["rollouts_to_target"]
        out[f"speedup_vs_{ref}_std"] = [float((seeds[ref] / seeds[s]).std()) for s in out["strategy"]]
    return out
