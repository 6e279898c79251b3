"""Statistics behind the figures: confidence intervals over seeds, rollouts-to-target and
speed-ups with seed-bootstrap intervals, and Kendall's tau between two rankings.

Conventions (the figure captions repeat them):

- A run is one (env, scenario, strategy, seed); seeds are the unit of replication. Steps of one
  run are not independent and are never resampled.
- Curves are averaged over seeds step by step (as ``allocbench.metrics.mean_curve``); bands
  are two-sided Student-t intervals of that mean over seeds.
- "Rollouts to target" is read off the seed-mean curve (allocbench.metrics); its interval comes from a
  percentile bootstrap that redraws seeds with replacement and recomputes the seed-mean
  curve. When every strategy has the same seeds they are redrawn jointly (paired by seed: in
  the simulator a seed fixes the prompt pool). Draws whose mean curve never reaches the target
  have no value; intervals are taken over the draws that do, and the share of those is kept.
- The default target, the peak of grpo's seed-mean curve, is itself a statistic of the seeds,
  so every draw recomputes it from its own redrawn grpo curve (the plug-in bootstrap: a draw's
  grpo always reaches its own peak, as the full sample's does). A target given as a number
  stays fixed in every draw. Holding the full sample's peak fixed instead would make about half
  of the draws miss it, grpo included, and rank grpo last in them: a ranking the estimator
  never produces.

numpy/pandas only: the t quantile comes from the regularised incomplete beta function below.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from allocbench import metrics

LEVEL = 0.95
N_BOOT = 2000


# --- Student t ------------------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=None)  # a report asks for the same few (level, seeds - 1) thousands of times
def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on ``t_cdf``; |error| < 1e-10)."""
    if not 0.0 < q < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < q < 1 and df > 0, got q={q}, df={df}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return 0.5 * (lo + hi)


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided Student-t interval of the mean of ``values`` (NaNs
    dropped). With one value the interval is that value (no spread to estimate)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(v.mean())
    if len(v) == 1:
        return (mean, mean, mean)
    half = t_quantile(0.5 + level / 2.0, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return (mean, mean - half, mean + half)


def mean_band(table: pd.DataFrame, by: list[str], value: str, level: float = LEVEL) -> pd.DataFrame:
    """Per group of ``by``: mean, low and high (t-interval) of ``value`` and the count n."""
    rows = []
    for key, g in table.groupby(by, sort=True)[value]:  # the one column: chopping the frame is slow
        mean, lo, hi = t_interval(g, level)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "mean": mean, "low": lo, "high": hi,
                     "n": int(g.notna().sum())})
    return pd.DataFrame(rows, columns=[*by, "mean", "low", "high", "n"])


# --- bootstrap ------------------------------------------------------------------------------

def bootstrap_ci(sample, statistic=np.mean, n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high): ``statistic`` of ``sample`` and its percentile-bootstrap interval
    (``n_boot`` resamples with replacement drawn from ``numpy.random.default_rng(seed)``).
    ``statistic`` maps a 1-d array to a number; resamples where it is NaN are dropped."""
    x = np.asarray(sample, dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    draws = np.array([statistic(x[i]) for i in idx], dtype=float)
    return (float(statistic(x)), *percentile_interval(draws, level))


def percentile_interval(draws, level: float = LEVEL) -> tuple[float, float]:
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


# --- rollouts to target -----------------------------------------------------------------------

@dataclass
class SeedCurves:
    """One strategy's evaluated curves as (seed x eval-step) arrays."""

    seeds: np.ndarray
    acc: np.ndarray  # eval_acc
    x: np.ndarray  # the budget column (cum_rollouts or cum_tokens)


def seed_curves(table: pd.DataFrame, column: str = "cum_rollouts") -> dict[str, SeedCurves]:
    """Per strategy: its evaluated rows pivoted to (seed x step) arrays. A run that stopped
    early has NaN at the steps it lacks. Raises ValueError when a strategy has two rows for
    one (seed, step) (the table mixes configurations)."""
    ev = table[table["eval_acc"].notna()]
    out = {}
    for name, g in ev.groupby("strategy", sort=False):
        if g.duplicated(["seed", "step"]).any():
            raise ValueError(f"strategy {name!r} has several rows for one (seed, step): the table "
                             "mixes environments, scenarios or hyper-parameter settings; select one")
        acc = g.pivot(index="seed", columns="step", values="eval_acc").sort_index(axis=1)
        x = g.pivot(index="seed", columns="step", values=column).reindex_like(acc)
        out[name] = SeedCurves(acc.index.to_numpy(), acc.to_numpy(float), x.to_numpy(float))
    return out


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _draws(curves: dict[str, SeedCurves], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Seed-index draws per strategy: one shared draw when all have the same seeds."""
    rng = np.random.default_rng(seed)
    seed_sets = {tuple(c.seeds) for c in curves.values()}
    if len(seed_sets) == 1:
        s = len(next(iter(seed_sets)))
        shared = rng.integers(0, s, size=(n_boot, s))
        return {name: shared for name in curves}
    return {name: rng.integers(0, len(c.seeds), size=(n_boot, len(c.seeds)))
            for name, c in curves.items()}


def rollouts_to_target(table: pd.DataFrame, target: float | None, column: str = "cum_rollouts",
                       n_boot: int = N_BOOT, seed: int = 0,
                       reference: str = "grpo") -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """({strategy: value on the seed-mean curve}, {strategy: bootstrap draws}) of ``column``
    (cum_rollouts or cum_tokens) at the first evaluation whose seed-mean accuracy reaches the
    target; NaN = not reached. ``target`` None: the peak of ``reference``'s seed-mean curve,
    in every draw that of its redrawn curve (``peak_targets``)."""
    curves = seed_curves(table, column)
    point_target = target if target is not None else float(np.nanmax(_nanmean(_reference(curves, reference).acc, 0)))
    point = {name: float(metrics.rollouts_to_target(_nanmean(c.acc, 0), _nanmean(c.x, 0), point_target))
             for name, c in curves.items()}
    return point, drawn_rollouts(curves, _draws(curves, n_boot, seed), target, reference)


def drawn_rollouts(curves: dict[str, SeedCurves], draws: dict[str, np.ndarray], target: float | None,
                   reference: str = "grpo") -> dict[str, np.ndarray]:
    """Per strategy, one value per draw: ``column`` at the first evaluation where the mean curve
    of the draw's seeds (a row of ``draws[name]``: indices into its ``seeds``) reaches the
    target; NaN = not reached. ``target`` None: each draw's own peak of ``reference``'s mean curve."""
    targets = target if target is not None else peak_targets(curves, draws, reference)
    return {name: metrics.rollouts_to_target(_nanmean(c.acc[draws[name]], 1), _nanmean(c.x[draws[name]], 1), targets)
            for name, c in curves.items()}


def _reference(curves: dict[str, SeedCurves], reference: str) -> SeedCurves:
    """The curves a target of None is taken from (ValueError without them)."""
    if reference not in curves:
        raise ValueError(f"no {reference} runs in the table to take the target from; pass a target")
    return curves[reference]


def peak_targets(curves: dict[str, SeedCurves], draws: dict[str, np.ndarray], reference: str) -> np.ndarray:
    """(n_boot, 1): the peak of ``reference``'s mean accuracy curve in each draw."""
    return np.nanmax(_nanmean(_reference(curves, reference).acc[draws[reference]], 1), axis=1)[:, None]


def speedup_ci(table: pd.DataFrame, target: float | None, references=("grpo", "dapo"),
               column: str = "cum_rollouts", n_boot: int = N_BOOT, level: float = LEVEL,
               seed: int = 0, target_reference: str = "grpo") -> pd.DataFrame:
    """Speed-up of every strategy over each reference present: rollouts_ref / rollouts_strategy
    to the target on seed-mean curves (allocbench.metrics), with its percentile-bootstrap interval over
    seeds. ``target`` None: the peak of ``target_reference``'s seed-mean curve, recomputed in
    every draw. Columns: strategy, reference, target (the full sample's), rollouts,
    ref_rollouts, speedup, low, high, valid (share of bootstrap draws in which both curves
    reach the target)."""
    point, boot = rollouts_to_target(table, target, column, n_boot, seed, reference=target_reference)
    target = metrics.default_target(table, target_reference) if target is None else target
    rows = []
    for ref in references:
        if ref not in point:
            continue
        for name in point:
            if name == ref:
                continue
            ratio = boot[ref] / boot[name]
            ok = np.isfinite(ratio)
            lo, hi = percentile_interval(ratio[ok], level)
            rows.append({"strategy": name, "reference": ref, "target": target,
                         "rollouts": point[name], "ref_rollouts": point[ref],
                         "speedup": point[ref] / point[name], "low": lo, "high": hi,
                         "valid": float(ok.mean())})
    return pd.DataFrame(rows, columns=["strategy", "reference", "target", "rollouts", "ref_rollouts",
                                       "speedup", "low", "high", "valid"])


# --- rank agreement -----------------------------------------------------------------------------

def kendall_tau(x, y) -> float:
    """Kendall's tau-b between two equally long score vectors (ties counted as in tau-b;
    +inf is an ordinary value, tied with other +inf). NaN when either has no two distinct
    values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError("kendall_tau needs two vectors of the same length")
    return float(kendall_taus(x[None], y[None])[0])


def kendall_taus(x, y) -> np.ndarray:
    """``kendall_tau`` of each row of ``x`` with the same row of ``y`` (2-D arrays of one
    shape; a 1-D one is one row for every row of the other): the bootstraps' thousands of
    taus at once."""
    x, y = np.broadcast_arrays(np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float)))
    i, j = np.triu_indices(x.shape[1], k=1)

    def signs(v: np.ndarray) -> np.ndarray:
        a, b = v[:, i], v[:, j]
        with np.errstate(invalid="ignore"):  # inf - inf: tied, and caught by a == b
            return np.sign(np.where(a == b, 0.0, a - b))

    dx, dy = signs(x), signs(y)
    s = (dx * dy).sum(axis=1)
    nx, ny = (dx != 0).sum(axis=1), (dy != 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((nx == 0) | (ny == 0), np.nan, s / np.sqrt(nx.astype(float) * ny))


def exact_model_tau(split_tau: float, m: int, n: int) -> float:
    """The Kendall tau an exact model (one ranking as the truth) is expected to reach against a
    board of ``n`` seeds, extrapolated from ``split_tau``, the mean tau between two disjoint
    boards of ``m`` seeds each (``replicate_agreement``'s real_tau).

    The model: on a board of k seeds a strategy's score is its true score plus independent noise
    of variance s2 / k, the true scores spread with variance V, all normal. Two boards of m then
    correlate at r_m = V / (V + s2 / m), a board of n and the truth at sqrt(V / (V + s2 / n)),
    and the expected tau of a correlation r is (2 / pi) asin(r) (Greiner's relation). NaN when
    ``split_tau`` <= 0: no agreement to extrapolate from. Rankings by rollouts to a target have
    ties and "never", which the model has not; in the simulator's own world, where the truth is
    known, it fell short of the exact model's measured tau by 0.03-0.12 (docs/agreement.md)."""
    noise = _noise_to_spread(split_tau, m)
    return 2 / math.pi * math.asin(math.sqrt(1 / (1 + noise / n))) if math.isfinite(noise) else math.nan


def seeds_for_tau(split_tau: float, m: int, target: float) -> float:
    """The seeds a board needs for ``exact_model_tau`` to reach ``target`` (same model)."""
    noise = _noise_to_spread(split_tau, m)
    return noise / (1 / math.sin(math.pi / 2 * target) ** 2 - 1) if math.isfinite(noise) else math.nan


def exact_model_pass_chance(split_tau: float, m: int, n: int, strategies: int, target: float,
                            draws: int = 20_000, seed: int = 0) -> float:
    """The chance that an exact model's tau against a board of ``n`` seeds reaches ``target``,
    over ``strategies`` strategies (``exact_model_tau``'s model, drawn ``draws`` times; the
    standard error is at most 0.5 / sqrt(draws)). The expected tau says where such a model lands
    on average; this says how often it clears a bar. NaN when ``split_tau`` <= 0."""
    noise = _noise_to_spread(split_tau, m)
    if not math.isfinite(noise):
        return math.nan
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(draws, strategies))
    board = truth + rng.normal(scale=math.sqrt(noise / n), size=truth.shape)
    return float((kendall_taus(truth, board) >= target).mean())


def _noise_to_spread(split_tau: float, m: int) -> float:
    """s2 / V of ``exact_model_tau``'s model, from the tau between two boards of m seeds."""
    r = math.sin(math.pi / 2 * split_tau)
    return m * (1 / r - 1) if r > 0 else math.nan


def _common_strategies(first: pd.DataFrame, second: pd.DataFrame) -> list:
    """The strategies of ``first``, in its order, that ``second`` runs too."""
    # the set once: built per name, it walked the whole column each time (half of the figures
    # command's sim-vs-real phase)
    known = set(pd.unique(second["strategy"]))
    return [s for s in pd.unique(first["strategy"]) if s in known]


def _nan_worst(values) -> np.ndarray:
    """NaN (never reached) -> +inf, the worst score; +inf itself stays +inf."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isnan(v), np.inf, v)


def ranks(scores) -> np.ndarray:
    """1 = best (lowest score); ties share the average rank; NaN counts as +inf (worst)."""
    s = pd.Series(_nan_worst(scores))
    return s.rank(method="average").to_numpy()


def rank_agreement(sim: pd.DataFrame, real: pd.DataFrame, sim_target: float | None, real_target: float | None,
                   n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0, reference: str = "grpo") -> dict:
    """Kendall's tau between the strategies' rollouts-to-target in two tables (each at its own
    target; not reached = worst), over the strategies both have, with a percentile-bootstrap
    interval that redraws the seeds of each table independently. A target None is the peak of
    ``reference``'s seed-mean curve on that side, recomputed in every draw.

    Returns dict(strategies, sim_score, real_score, sim_rank, real_rank, tau, low, high, valid,
    ceiling_low, ceiling_high): the ceiling is the interval a noise-free simulator that ranks
    exactly as the real point estimate would get (tau between it and each real redraw), the
    best any simulator can show at these real seeds.
    """
    common = _common_strategies(sim, real)
    if len(common) < 2:
        raise ValueError("fewer than two strategies in both tables: no ranking to compare")
    sim_pt, sim_boot = rollouts_to_target(sim[sim["strategy"].isin(common)], sim_target,
                                          n_boot=n_boot, seed=seed, reference=reference)
    real_pt, real_boot = rollouts_to_target(real[real["strategy"].isin(common)], real_target,
                                            n_boot=n_boot, seed=seed + 1, reference=reference)
    s_pt, r_pt = _nan_worst([sim_pt[s] for s in common]), _nan_worst([real_pt[s] for s in common])
    # (n_boot, strategies): each draw's scores, not reached = worst
    sim_draws, real_draws = (_nan_worst(np.column_stack([boot[s] for s in common])) for boot in (sim_boot, real_boot))
    taus = kendall_taus(sim_draws, real_draws)
    # The ceiling: what a simulator that reproduced the real point ranking exactly, with no noise
    # of its own, would get against the same real redraws. Its interval's width is the real
    # seeds' share of the uncertainty, which no simulator can remove.
    perfect = kendall_taus(r_pt, real_draws)
    lo, hi = percentile_interval(taus, level)
    ceiling_lo, ceiling_hi = percentile_interval(perfect, level)
    return {"strategies": common, "sim_score": s_pt, "real_score": r_pt,
            "sim_rank": ranks(s_pt), "real_rank": ranks(r_pt), "tau": kendall_tau(s_pt, r_pt),
            "low": lo, "high": hi, "valid": float(np.isfinite(taus).mean()),
            "ceiling_low": ceiling_lo, "ceiling_high": ceiling_hi}


REPLICATE_COLUMNS = ["seeds_per_side", "splits", "real_tau", "real_low", "real_high",
                     "sim_tau", "sim_low", "sim_high"]


def replicate_agreement(sim: pd.DataFrame, real: pd.DataFrame, sim_target: float | None = None,
                        real_target: float | None = None, n_splits: int = 200, level: float = LEVEL,
                        seed: int = 0, reference: str = "grpo") -> pd.DataFrame:
    """How well the real runs rank the strategies like themselves, and the simulator like them,
    at the same number of seeds a side: the yardstick for a simulated ranking's tau. A tau
    between two rankings of a few seeds each is lowered by both sides' seed noise, so no
    simulator can be expected to agree with m real seeds better than m other real seeds do.

    For m = 1 .. R // 2 seeds a side (R: the seeds every strategy of ``real`` has; the
    strategies both tables hold), each of ``n_splits`` random splits draws two disjoint sets of
    m real seeds and m of the simulated ones (without replacement; only while the simulator has
    m seeds). Each set ranks the strategies by rollouts to its own target (as
    ``rank_agreement``: None = the peak of the set's own ``reference`` curve; never reached =
    last). ``real_tau`` is Kendall's tau-b between the two real sets, ``sim_tau`` between the
    simulated set and the first real set: their mean over the splits, and the middle ``level``
    of the splits (``*_low``, ``*_high``: the spread of one such comparison, not an interval of
    the mean). One row per m (``REPLICATE_COLUMNS``); empty when the real runs have < 2 seeds."""
    common = _common_strategies(real, sim)
    if len(common) < 2:
        raise ValueError("fewer than two strategies in both tables: no ranking to compare")
    curves = {side: seed_curves(t[t["strategy"].isin(common)]) for side, t in (("sim", sim), ("real", real))}
    shared = {side: np.array(sorted(set.intersection(*(set(c.seeds.tolist()) for c in cs.values()))))
              for side, cs in curves.items()}
    targets = {"sim": sim_target, "real": real_target}
    rng = np.random.default_rng(seed)

    def scores(side: str, chosen: np.ndarray) -> np.ndarray:
        """(splits, strategies): each split's rollouts to target, never reached = +inf."""
        draws = {k: np.searchsorted(c.seeds, chosen) for k, c in curves[side].items()}
        drawn = drawn_rollouts(curves[side], draws, targets[side], reference)
        return _nan_worst(np.column_stack([drawn[k] for k in common]))

    rows = []
    for m in range(1, len(shared["real"]) // 2 + 1):
        order = np.argsort(rng.random((n_splits, len(shared["real"]))), axis=1)
        first, second = (shared["real"][order[:, part]] for part in (slice(0, m), slice(m, 2 * m)))
        a, b = scores("real", first), scores("real", second)
        real_taus = kendall_taus(a, b)
        sim_taus = np.full(n_splits, np.nan)
        if len(shared["sim"]) >= m:
            picked = shared["sim"][np.argsort(rng.random((n_splits, len(shared["sim"]))), axis=1)[:, :m]]
            sim_taus = kendall_taus(scores("sim", picked), a)
        row = {"seeds_per_side": m, "splits": n_splits}
        for side, taus in (("real", real_taus), ("sim", sim_taus)):
            finite = taus[np.isfinite(taus)]
            row[f"{side}_tau"] = float(finite.mean()) if len(finite) else math.nan
            row[f"{side}_low"], row[f"{side}_high"] = percentile_interval(finite, level)
        rows.append(row)
    return pd.DataFrame(rows, columns=REPLICATE_COLUMNS).astype(
        {c: int if c in ("seeds_per_side", "splits") else float for c in REPLICATE_COLUMNS})
