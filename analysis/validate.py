"""Sim-vs-real validation: how well the simulator's ranking of strategies agrees with a real
leaderboard's (``allocbench validate``).

Each side (one simulated table, one real table, each of one scenario) is read at its own
target: by default the peak of the reference strategy's (grpo's) seed-mean accuracy curve on
that side, which every bootstrap draw recomputes from its redrawn seeds (``analysis.stats``).
Over the strategies both sides hold:

- Kendall's tau-b between the two rankings by rollouts to target (never reached = worst), with
  a percentile-bootstrap interval that redraws the seeds of each side independently
  (``analysis.stats.rank_agreement``);
- per strategy, its speed-up over the reference on each side (rollouts_ref / rollouts_strategy
  at that side's target, ``analysis.stats.speedup_ci``) with its bootstrap interval, its rank on
  each side (1 = fewest rollouts; ties share the average rank) and how many of its seeds'
  own curves reached the target (``allocbench.metrics.rollouts_to_target``).

Beside the ranks, which differences the real seeds resolve at all (``paired``): per strategy,
its held-out accuracy minus the reference's at equal cum_rollouts over the reference's
evaluations from ``PAIRED_FROM`` x its final spend on, paired by seed, with a t-interval over
seeds on each side.

The speed-up intervals use the same bootstrap seeds as the rank agreement (``seed`` for the
simulated side, ``seed + 1`` for the real side), hence the same redrawn seed sets.

Functions from tables to tables and dicts; reading folders and writing files is the CLI's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from allocbench import metrics
from allocbench.errors import ConfigError
from analysis import stats

# one row per strategy (validate.csv)
COLUMNS = ["strategy", "reference",
           "sim_rollouts", "sim_speedup", "sim_low", "sim_high", "sim_valid", "sim_rank",
           "sim_seeds_reached", "sim_seeds",
           "real_rollouts", "real_speedup", "real_low", "real_high", "real_valid", "real_rank",
           "real_seeds_reached", "real_seeds"]
# one row (agreement.csv)
AGREEMENT_COLUMNS = ["sim_scenario", "real_scenario", "reference", "n_strategies", "strategies",
                     "tau", "low", "high", "valid", "ceiling_low", "ceiling_high", "sim_target", "real_target", "n_boot", "level", "seed"]
SIDES = ("sim", "real")
N_SPLITS = 200  # random splits of the seeds per number of seeds a side (replicates)
# one row per strategy other than the reference (paired.csv)
PAIRED_COLUMNS = ["strategy", "reference", *(f"{side}_{k}" for side in SIDES
                                              for k in ("diff", "low", "high", "seeds", "verdict"))]
# the window of the paired differences: the reference's evaluations from this share of its own
# spend on, the part of its run where its peak (the target) lies
PAIRED_FROM = 0.5


def scenario_of(table: pd.DataFrame, side: str) -> str:
    """The one scenario a side's table holds; ConfigError when it holds none or several."""
    if table.empty:
        raise ConfigError(f"the {side} table has no rows")
    found = list(pd.unique(table["scenario"]))
    if len(found) != 1:
        raise ConfigError(f"the {side} table holds several scenarios ({', '.join(map(str, found))}); "
                          "select one")
    return str(found[0])


def combine(tables: list[pd.DataFrame], side: str) -> pd.DataFrame:
    """One side's table from several results of one scenario (strategies run at different
    times). A run (strategy, seed) found in more than one must be the same run: equal
    ``cum_rollouts`` and ``eval_acc`` at every step (ConfigError otherwise); it is kept once."""
    if len(tables) == 1:
        return tables[0]
    scenarios = {scenario_of(t, side) for t in tables}
    if len(scenarios) > 1:
        raise ConfigError(f"the {side} results hold different scenarios ({', '.join(sorted(scenarios))})")
    both = pd.concat(tables, ignore_index=True)
    key = ["strategy", "seed", "step"]
    seen = both[both.duplicated(key, keep=False)]
    if not seen.empty:
        spread = seen.groupby(key)[["cum_rollouts", "eval_acc"]].nunique(dropna=False)
        if (spread > 1).any(axis=None):
            runs = sorted({f"{s} seed {d}" for s, d, _ in spread[(spread > 1).any(axis=1)].index})
            raise ConfigError(f"the {side} results disagree on runs they share ({', '.join(runs)}): "
                              "not the same runs")
    return both.drop_duplicates(key).reset_index(drop=True)


def common_strategies(sim: pd.DataFrame, real: pd.DataFrame, reference: str = "grpo") -> list[str]:
    """The strategies both tables hold, in the simulated table's order, after checking that the
    reference is on both sides and that at least two strategies are common (ConfigError)."""
    names = {side: list(pd.unique(t["strategy"])) for side, t in zip(SIDES, (sim, real))}
    for side in SIDES:
        if reference not in names[side]:
            raise ConfigError(f"reference strategy {reference!r} is not in the {side} table "
                              f"(it has {', '.join(names[side])}); choose another reference")
    common = [s for s in names["sim"] if s in set(names["real"])]
    if len(common) < 2:
        raise ConfigError(f"{len(common)} {'strategy' if len(common) == 1 else 'strategies'} in both tables "
                          f"({', '.join(common) or 'none'}; sim has "
                          f"{', '.join(names['sim'])}; real has {', '.join(names['real'])}): "
                          "at least two are needed to compare rankings")
    return common


def side_target(table: pd.DataFrame, reference: str = "grpo", target: float | None = None,
                side: str = "sim") -> float:
    """``target`` when given, else the peak of ``reference``'s seed-mean eval_acc curve."""
    if target is not None:
        return float(target)
    try:
        value = metrics.default_target(table, reference)
    except ValueError as err:
        raise ConfigError(f"{side} table: {err}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{side} table: {reference} has no evaluated accuracy to take the target from")
    return value


def seeds_reached(table: pd.DataFrame, target: float) -> dict[str, tuple[int, int]]:
    """Per strategy: (seeds whose own curve reaches ``target``, seeds)."""
    out = {}
    for name, c in stats.seed_curves(table).items():
        per_seed = metrics.rollouts_to_target(c.acc, c.x, target)
        out[name] = (int(np.isfinite(per_seed).sum()), len(c.seeds))
    return out


def _speedups(table: pd.DataFrame, target: float | None, reference: str, n_boot: int, level: float,
              seed: int) -> dict[str, dict]:
    """Per strategy (the reference included, at 1x): rollouts, speedup, low, high, valid.
    ``target`` None: the reference's peak, recomputed in every draw."""
    sp = stats.speedup_ci(table, target, references=(reference,), n_boot=n_boot, level=level, seed=seed,
                          target_reference=reference)
    out = {r.strategy: {"rollouts": r.rollouts, "speedup": r.speedup, "low": r.low, "high": r.high,
                        "valid": r.valid} for r in sp.itertuples(index=False)}
    ref_rollouts = float(sp["ref_rollouts"].iloc[0])
    one = 1.0 if math.isfinite(ref_rollouts) else math.nan
    out[reference] = {"rollouts": ref_rollouts, "speedup": one, "low": one, "high": one, "valid": math.nan}
    return out


def validate(sim: pd.DataFrame, real: pd.DataFrame, sim_target: float | None = None,
             real_target: float | None = None, reference: str = "grpo", n_boot: int = stats.N_BOOT,
             level: float = stats.LEVEL, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(validation table, agreement) of a simulated and a real results table (one scenario
    each), every value at each side's own target (default: the reference's peak seed-mean
    accuracy on that side).

    The table has one row per strategy both sides hold (``COLUMNS``), ordered by real rank then
    simulated rank: rollouts to target on the seed-mean curve, speed-up over the reference with
    its percentile-bootstrap interval and the share of draws where both reached the target
    (``valid``; NaN for the reference itself), rank, and seeds reached / seeds, per side.

    The agreement is a dict with ``AGREEMENT_COLUMNS`` keys (``strategies`` a list): Kendall's
    tau-b of the two rankings, its interval (``low``, ``high``) and the share of bootstrap draws
    where tau is defined (``valid``). Bad input raises ConfigError with the reason."""
    if n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot}")
    scenarios = {side: scenario_of(t, side) for side, t in zip(SIDES, (sim, real))}
    common = common_strategies(sim, real, reference)
    targets = {"sim": side_target(sim, reference, sim_target, "sim"),
               "real": side_target(real, reference, real_target, "real")}
    parts = {"sim": sim[sim["strategy"].isin(common)], "real": real[real["strategy"].isin(common)]}
    seeds = {"sim": seed, "real": seed + 1}  # the seeds stats.rank_agreement draws each side with
    given = {"sim": sim_target, "real": real_target}  # None: the reference's peak, redrawn with the seeds
    try:
        agree = stats.rank_agreement(parts["sim"], parts["real"], given["sim"], given["real"],
                                     n_boot=n_boot, level=level, seed=seed, reference=reference)
        speed = {side: _speedups(parts[side], given[side], reference, n_boot, level, seeds[side])
                 for side in SIDES}
    except ConfigError:
        raise
    except ValueError as err:  # e.g. a table that mixes hyper-parameter settings
        raise ConfigError(str(err)) from None
    reached = {side: seeds_reached(parts[side], targets[side]) for side in SIDES}
    rank = {side: dict(zip(agree["strategies"], agree[f"{side}_rank"])) for side in SIDES}
    rows = []
    for name in common:
        row = {"strategy": name, "reference": reference}
        for side in SIDES:
            s = speed[side][name]
            row.update({f"{side}_rollouts": s["rollouts"], f"{side}_speedup": s["speedup"],
                        f"{side}_low": s["low"], f"{side}_high": s["high"], f"{side}_valid": s["valid"],
                        f"{side}_rank": float(rank[side][name]),
                        f"{side}_seeds_reached": reached[side][name][0],
                        f"{side}_seeds": reached[side][name][1]})
        rows.append(row)
    table = (pd.DataFrame(rows, columns=COLUMNS)
             .sort_values(["real_rank", "sim_rank", "strategy"], kind="stable").reset_index(drop=True))
    agreement = {"sim_scenario": scenarios["sim"], "real_scenario": scenarios["real"],
                 "reference": reference, "n_strategies": len(common), "strategies": list(agree["strategies"]),
                 "tau": float(agree["tau"]), "low": float(agree["low"]), "high": float(agree["high"]),
                 "valid": float(agree["valid"]), "ceiling_low": float(agree["ceiling_low"]),
                 "ceiling_high": float(agree["ceiling_high"]), "sim_target": targets["sim"], "real_target": targets["real"],
                 "n_boot": int(n_boot), "level": float(level), "seed": int(seed)}
    return table, agreement


def paired_differences(table: pd.DataFrame, reference: str = "grpo", level: float = stats.LEVEL,
                       start: float = PAIRED_FROM) -> pd.DataFrame:
    """Per strategy other than ``reference``: how much higher its held-out accuracy is than the
    reference's at equal spend, paired by seed. For each seed both ran: at each of the
    reference's evaluations from ``start`` x its final cum_rollouts on that lie within the
    strategy's own spend, the strategy's eval_acc (linearly interpolated in cum_rollouts) minus
    the reference's, averaged; then the mean over seeds with its Student-t interval.

    Columns: strategy, diff, low, high, seeds (the seeds with a difference) and verdict:
    ``better`` / ``worse`` when the interval lies above / below 0, ``same runs`` when every
    seed's difference is exactly 0 (a rule that ran as the reference did), ``unresolved``
    otherwise (fewer than two seeds included), ``no overlap`` when no seed's run reaches the
    window (a rule that stopped spending before it)."""
    curves = stats.seed_curves(table)
    if reference not in curves:
        raise ConfigError(f"reference strategy {reference!r} has no evaluated runs")
    ref = curves[reference]
    rows = []
    for name, c in curves.items():
        if name == reference:
            continue
        per_seed = []
        for seed in np.intersect1d(c.seeds, ref.seeds):
            rx, ra = _finite_curve(ref, seed)
            cx, ca = _finite_curve(c, seed)
            if len(rx) == 0 or len(cx) == 0:
                continue
            window = (rx >= start * rx[-1]) & (rx >= cx[0]) & (rx <= cx[-1])
            if window.any():
                per_seed.append(float(np.mean(np.interp(rx[window], cx, ca) - ra[window])))
        mean, low, high = stats.t_interval(per_seed, level)
        rows.append({"strategy": name, "diff": mean, "low": low, "high": high, "seeds": len(per_seed),
                     "verdict": _verdict(per_seed, low, high)})
    return pd.DataFrame(rows, columns=["strategy", "diff", "low", "high", "seeds", "verdict"])


def _finite_curve(curves: stats.SeedCurves, seed) -> tuple[np.ndarray, np.ndarray]:
    """(cum_rollouts, eval_acc) of one seed's run, at its evaluations."""
    i = int(np.flatnonzero(curves.seeds == seed)[0])
    keep = np.isfinite(curves.x[i]) & np.isfinite(curves.acc[i])
    return curves.x[i][keep], curves.acc[i][keep]


def _verdict(per_seed: list[float], low: float, high: float) -> str:
    if not per_seed:
        return "no overlap"
    if all(d == 0 for d in per_seed):
        return "same runs"
    if len(per_seed) < 2:
        return "unresolved"
    return "better" if low > 0 else "worse" if high < 0 else "unresolved"


def paired(sim: pd.DataFrame, real: pd.DataFrame, reference: str = "grpo",
           level: float = stats.LEVEL) -> pd.DataFrame:
    """``paired_differences`` on both sides over the strategies both hold (``PAIRED_COLUMNS``),
    in the simulated table's order. Bad input raises ConfigError."""
    common = [s for s in common_strategies(sim, real, reference) if s != reference]
    parts = []
    for side, table in zip(SIDES, (sim, real)):
        try:
            d = paired_differences(table[table["strategy"].isin([reference, *common])], reference, level)
        except ValueError as err:  # e.g. a table that mixes hyper-parameter settings
            raise ConfigError(str(err)) from None
        parts.append(d.set_index("strategy").add_prefix(f"{side}_"))
    out = parts[0].join(parts[1]).reindex(common).reset_index()
    return out.assign(reference=reference)[PAIRED_COLUMNS]


def paired_line(table: pd.DataFrame, level: float = stats.LEVEL) -> str:
    """The paired differences as one paragraph: which differences from the reference the real
    seeds resolve, and whether the simulator gives them the same sign."""
    ref = table["reference"].iloc[0] if len(table) else "the reference"
    resolved = table[table["real_verdict"].isin(["better", "worse"])]
    same = resolved[resolved["sim_verdict"] == resolved["real_verdict"]]
    sign = resolved[np.sign(resolved["sim_diff"]) == np.sign(resolved["real_diff"])]
    wrong = resolved[np.sign(resolved["sim_diff"]) == -np.sign(resolved["real_diff"])]
    # a simulated difference of exactly 0 (the rule ran as the reference) or none (no overlap)
    flat = resolved[~resolved["strategy"].isin([*sign["strategy"], *wrong["strategy"]])]
    only_sim = table[table["sim_verdict"].isin(["better", "worse"]) & ~table["real_verdict"].isin(["better", "worse"])]

    def names(rows: pd.DataFrame) -> str:
        return ", ".join(rows["strategy"]) or "none"

    return (f"held-out accuracy against {ref} at equal rollouts ({ref}'s evaluations from {PAIRED_FROM:g} x its "
            f"final spend on, paired by seed, "
            f"{level:.0%} t-intervals): the real seeds resolve {len(resolved)} of {len(table)} "
            f"(better: {names(resolved[resolved['real_verdict'] == 'better'])}; "
            f"worse: {names(resolved[resolved['real_verdict'] == 'worse'])}); "
            f"the simulator gives {len(sign)} of them the same sign ({len(same)} resolved alike), "
            f"the opposite sign to {names(wrong)}, no difference to {names(flat)}; "
            f"it resolves what the real seeds do not for {names(only_sim)}")


def replicates(sim: pd.DataFrame, real: pd.DataFrame, sim_target: float | None = None,
               real_target: float | None = None, reference: str = "grpo", n_splits: int = N_SPLITS,
               level: float = stats.LEVEL, seed: int = 0) -> pd.DataFrame:
    """The replicate agreement (``analysis.stats.replicate_agreement``) over the strategies both
    tables hold: per number of seeds a side, how well two disjoint sets of real seeds rank them
    alike, and the simulator's seeds like the real ones. Bad input raises ConfigError."""
    if n_splits < 1:
        raise ConfigError(f"the number of splits must be a positive integer, got {n_splits}")
    common_strategies(sim, real, reference)  # its checks: the reference on both sides, two strategies in common
    try:  # replicate_agreement keeps the strategies both tables hold
        return stats.replicate_agreement(sim, real, sim_target, real_target, n_splits=n_splits, level=level,
                                         seed=seed, reference=reference)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def replicate_line(replicates: pd.DataFrame) -> str:
    """The replicate agreement at the most seeds a side both comparisons have, as one line."""
    rows = replicates[np.isfinite(replicates["sim_tau"]) & np.isfinite(replicates["real_tau"])]
    if rows.empty:
        return "replicate agreement: the real runs have too few seeds to split"
    r = rows.iloc[-1]
    m = int(r.seeds_per_side)
    return (f"at {m} seed{'s' if m != 1 else ''} a side ({r.splits:g} random splits; mean, and the middle of the splits): "
            f"real seeds against other real seeds tau = {r.real_tau:.2f} [{r.real_low:.2f}, {r.real_high:.2f}], "
            f"simulated seeds against real seeds {r.sim_tau:.2f} [{r.sim_low:.2f}, {r.sim_high:.2f}]")


def exact_model_line(replicates: pd.DataFrame, real_seeds: int, strategies: int, target: float = 0.8) -> str:
    """What an exact simulator could be expected to show against these real seeds, as one line:
    ``analysis.stats.exact_model_tau`` from the real seeds' own agreement at the most seeds a
    side, the chance that it reaches ``target`` over ``strategies`` strategies, and the real seeds
    at which it would reach ``target`` on average."""
    rows = replicates[np.isfinite(replicates["real_tau"])]
    if rows.empty:
        return "an exact simulator's expected tau: the real runs have too few seeds to split"
    r = rows.iloc[-1]
    m = int(r.seeds_per_side)
    expected = stats.exact_model_tau(r.real_tau, m, real_seeds)
    if not math.isfinite(expected):
        return f"an exact simulator's expected tau: the real seeds do not agree with each other at {m} a side"
    need = stats.seeds_for_tau(r.real_tau, m, target)
    chance = stats.exact_model_pass_chance(r.real_tau, m, real_seeds, strategies, target)
    return (f"an exact simulator, extrapolated from the real seeds' own agreement at {m} a side (normal scores, "
            f"tau = 2/pi asin r): expected tau {expected:.2f} against all {real_seeds} real seeds, "
            f"tau >= {target:g} in {chance:.0%} of boards; {target:g} on average from about {math.ceil(need)} "
            f"real seeds")


def spread_line(sim: pd.DataFrame, real: pd.DataFrame, reference: str = "grpo") -> str:
    """How far the reference's runs drift apart by seed on each side, as one line: the std over
    seeds of the held-out accuracy gain (``allocbench.metrics.gain_spread``), averaged over the
    evaluations after step 0. A simulator whose seeds drift apart less than the real ones ranks
    alike from fewer seeds than real training does."""
    spread = {side: metrics.gain_spread(t[t["strategy"] == reference])["std"].mean() for side, t in
              zip(SIDES, (sim, real))}
    ratio = spread["sim"] / spread["real"] if spread["real"] > 0 else math.nan
    return (f"seed spread of {reference}'s accuracy gain (std over seeds, mean over the evaluations): simulated "
            f"{spread['sim']:.4f}, real {spread['real']:.4f} ({ratio:.2f}x)")


def agreement_table(agreement: dict) -> pd.DataFrame:
    """The agreement as a one-row table (``AGREEMENT_COLUMNS``; strategies joined by spaces)."""
    row = {k: agreement[k] for k in AGREEMENT_COLUMNS}
    row["strategies"] = " ".join(agreement["strategies"])
    return pd.DataFrame([row], columns=AGREEMENT_COLUMNS)


def _speedup_text(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "not reached"
    ci = f"[{low:.2f}, {high:.2f}]" if math.isfinite(low) and math.isfinite(high) else "[n/a]"
    return f"{value:.2f}x {ci}"


def _rank_text(value: float) -> str:
    return f"{value:g}"


def tau_line(agreement: dict) -> str:
    """'Kendall tau = 0.xx [lo, hi] over N strategies', then the ceiling's interval."""
    a = agreement
    return (f"Kendall tau = {a['tau']:.2f} [{a['low']:.2f}, {a['high']:.2f}] over {a['n_strategies']} strategies; "
            f"a simulator ranking exactly as the real point estimate would get [{a['ceiling_low']:.2f}, "
            f"{a['ceiling_high']:.2f}] at these real seeds")


def render(table: pd.DataFrame, agreement: dict) -> str:
    """The validation as readable text: a header, one line per strategy and the tau line."""
    a = agreement
    head = ["strategy", "sim speed-up", "real speed-up", "sim rank", "real rank", "sim seeds", "real seeds"]
    lines = [[r.strategy, _speedup_text(r.sim_speedup, r.sim_low, r.sim_high),
              _speedup_text(r.real_speedup, r.real_low, r.real_high),
              _rank_text(r.sim_rank), _rank_text(r.real_rank),
              f"{r.sim_seeds_reached}/{r.sim_seeds}", f"{r.real_seeds_reached}/{r.real_seeds}"]
             for r in table.itertuples(index=False)]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    intro = (f"sim: {a['sim_scenario']} (target {a['sim_target']:.3f}); real: {a['real_scenario']} "
             f"(target {a['real_target']:.3f})\n"
             f"speed-up = rollouts of {a['reference']} / rollouts of the strategy to the target; "
             f"{a['level']:.0%} seed-bootstrap intervals ({a['n_boot']} resamples); rank 1 = fewest rollouts; "
             "seeds = seeds whose own curve reached the target")
    return "\n".join([intro, "", fmt(head), *map(fmt, lines), "", tau_line(a)])
