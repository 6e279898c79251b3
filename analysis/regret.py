"""No-regret check of one strategy against rivals, scenario by scenario (``allocbench regret``).

In each scenario's table, at the target (by default the peak of grpo's seed-mean accuracy
curve, as every leaderboard here; each bootstrap draw takes its redrawn curve's): the strategy's rollouts to the target over the best of the
rivals' (``ratio``, 1.05 = 5% more than the best; the best is taken in each bootstrap draw),
and its speed-up over each rival (rival's rollouts / its rollouts), each with a percentile
bootstrap interval over seeds (``analysis.stats.rollouts_to_target``).

A rival that never reaches the target in a scenario has no rollouts to it: its speed-up is then
a lower bound, the rival's whole spend (the last point of its seed-mean curve) over the
strategy's rollouts, marked ``bound``; never-reached counts as infinitely many rollouts when
taking the best rival. The summary's geometric means over scenarios take only the scenarios
where both reached the target, and say in how many more the rival never did.

Functions from tables to tables; reading folders and writing files is the CLI's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from allocbench import metrics
from allocbench.errors import ConfigError
from analysis import stats

COLUMNS = ["env", "scenario", "steps", "target", "seeds", "rollouts", "best_rival", "best_rival_rollouts",
           "ratio", "ratio_low", "ratio_high", "within"]


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of draws that may hold +inf (never reached); NaN draws dropped."""
    d = np.sort(draws[~np.isnan(draws)])
    if len(d) == 0:
        return math.nan, math.nan
    lo, hi = (int(np.floor(q * (len(d) - 1))) for q in ((1 - level) / 2, (1 + level) / 2))
    return float(d[lo]), float(d[hi])


def _spend(table: pd.DataFrame, name: str) -> float:
    """The last cum_rollouts of a strategy's seed-mean curve: all it spent."""
    curve = metrics.mean_curve(table[table["strategy"] == name])
    return float(curve.sort_values("step")["cum_rollouts"].iloc[-1])


def regret_row(table: pd.DataFrame, strategy: str, rivals: list[str], target: float | None = None,
               reference: str = "grpo", tolerance: float = 0.05, n_boot: int = stats.N_BOOT,
               level: float = stats.LEVEL, seed: int = 0) -> dict:
    """One scenario's row: ``COLUMNS`` plus ``speedup_vs_R``, ``_low``, ``_high`` and
    ``_bound`` per rival R."""
    present = set(table["strategy"])
    missing = [s for s in [strategy, *rivals, reference] if s not in present]
    if missing:
        raise ConfigError(f"{table['scenario'].iloc[0]}: no runs of {', '.join(dict.fromkeys(missing))} "
                          f"(it has {', '.join(pd.unique(table['strategy']))})")
    # the default target, the reference's peak, is recomputed in every bootstrap draw (analysis.stats)
    point, boot = stats.rollouts_to_target(table[table["strategy"].isin([strategy, *rivals, reference])],
                                           None if target is None else float(target), n_boot=n_boot, seed=seed,
                                           reference=reference)
    target = metrics.default_target(table, reference) if target is None else float(target)
    inf = {k: np.where(np.isnan(v), np.inf, v) for k, v in boot.items()}
    ptinf = {k: math.inf if math.isnan(v) else v for k, v in point.items()}
    best = min(rivals, key=lambda r: ptinf[r])
    best_draws = np.min([inf[r] for r in rivals], axis=0)
    with np.errstate(invalid="ignore"):
        ratio_draws = inf[strategy] / best_draws
    ratio = ptinf[strategy] / ptinf[best] if math.isfinite(ptinf[best]) else math.nan
    low, high = _interval(ratio_draws, level)
    row = {"env": table["env"].iloc[0], "scenario": table["scenario"].iloc[0],
           "steps": int(table["step"].max()), "target": target,
           "seeds": int(table["seed"].nunique()), "rollouts": point[strategy], "best_rival": best,
           "best_rival_rollouts": point[best], "ratio": ratio, "ratio_low": low, "ratio_high": high,
           "within": bool(ratio <= 1 + tolerance)}
    for rival in rivals:
        bound = math.isnan(point[rival])
        # never reached: at least its whole spend, in every draw
        theirs = np.full(n_boot, _spend(table, rival)) if bound else boot[rival]
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = theirs / boot[strategy]
        lo, hi = _interval(draws, level)
        row.update({f"speedup_vs_{rival}": float(theirs[0] if bound else point[rival]) / point[strategy],
                    f"speedup_vs_{rival}_low": lo, f"speedup_vs_{rival}_high": hi,
                    f"speedup_vs_{rival}_bound": bound})
    return row


def regret(tables: list[pd.DataFrame], strategy: str, rivals: list[str], **kw) -> pd.DataFrame:
    """One row per scenario table (see ``regret_row``)."""
    return pd.DataFrame([regret_row(t, strategy, rivals, **kw) for t in tables])


def geometric_mean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if len(v) else math.nan


def render(table: pd.DataFrame, strategy: str, rivals: list[str], tolerance: float = 0.05) -> str:
    """The check as a markdown table and a summary: scenarios within the tolerance, geometric
    mean speed-ups where both reached the target."""
    head = ["env", "scenario", "steps", "seeds", f"{strategy} / best", "best rival",
            *[f"vs {r}" for r in rivals], "within"]

    def num(v, lo, hi, bound=False):
        if not math.isfinite(v):
            return "not reached"
        return f"{'≥ ' if bound else ''}{v:.2f}x [{lo:.2f}, {hi:.2f}]"

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        cells = [r["env"], r["scenario"], str(r["steps"]), str(r["seeds"]), num(r["ratio"], r["ratio_low"], r["ratio_high"]),
                 r["best_rival"],
                 *[num(r[f"speedup_vs_{x}"], r[f"speedup_vs_{x}_low"], r[f"speedup_vs_{x}_high"],
                       r[f"speedup_vs_{x}_bound"]) for x in rivals],
                 "yes" if r["within"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    summary = [f"{int(table['within'].sum())} of {len(table)} scenarios within {tolerance:.0%} of the best "
               f"rival ({', '.join(rivals)}); rollouts to the target, {strategy} / best."]
    for rival in rivals:
        exact = table[~table[f"speedup_vs_{rival}_bound"] & np.isfinite(table[f"speedup_vs_{rival}"])]
        never = int(table[f"speedup_vs_{rival}_bound"].sum())
        note = f"; in {never} more, {rival} never reached the target" if never else ""
        summary.append(f"Geometric-mean speed-up over {rival}: {geometric_mean(exact[f'speedup_vs_{rival}']):.2f}x "
                       f"over the {len(exact)} scenarios where both reached the target{note}.")
    return "\n".join(lines + [""] + summary)
