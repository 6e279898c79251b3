"""Figures: each a function from a tidy results table to a matplotlib Figure.

Every figure is drawn at a paper's column width (``COL`` inches) in one seaborn theme, so
that its text stays readable when printed at that width. A figure whose data is absent raises
``NoData`` with the reason (the report prints it and goes on). Confidence intervals: see
``analysis.stats`` (t-intervals over seeds for curves, seed bootstrap for rollouts-to-target).
"""

from __future__ import annotations

import zlib

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a screen
import matplotlib.collections  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from allocbench.metrics import mean_curve  # noqa: E402
from analysis import stats  # noqa: E402

COL = 3.4  # inches: one column of a two-column paper
KNOWN = ("grpo", "dapo", "pilot_commit")  # fixed colours and order for the usual strategies
REFERENCES = ("grpo", "dapo")


class NoData(ValueError):
    """The table lacks what a figure needs; the message says what."""


def theme() -> None:
    """One theme for every figure, readable at a paper's column width."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0, rc={
        "axes.titlesize": 9, "axes.labelsize": 8.5, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
        "legend.fontsize": 7.5, "legend.title_fontsize": 7.5, "legend.frameon": False,
        "lines.linewidth": 1.5, "grid.linewidth": 0.5, "axes.linewidth": 0.6,
        "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.bbox": "tight", "savefig.pad_inches": 0.02})


def order(names) -> list[str]:
    """Strategies in a fixed order: the usual ones first, then the rest by name."""
    names = list(dict.fromkeys(names))
    return [n for n in KNOWN if n in names] + sorted(n for n in names if n not in KNOWN)


def _colour_order() -> list[str]:
    """The usual strategies, then every registered one by name: each keeps its colour in every
    figure and every report, whichever subset a table holds."""
    global _COLOUR_ORDER
    if _COLOUR_ORDER is None:
        try:
            from allocbench.strategy import strategy_names

            registered = strategy_names()
        except Exception:  # the registry is a nicety here, never a reason to fail a figure
            registered = []
        _COLOUR_ORDER = list(KNOWN) + sorted(set(registered) - set(KNOWN))
    return _COLOUR_ORDER


_COLOUR_ORDER: list[str] | None = None


def color(name: str):
    """A strategy's colour, the same in every figure and every report (20 distinct colours:
    seaborn's colorblind palette, then its dark one)."""
    palette = sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)
    known = _colour_order()
    if name in known and known.index(name) < len(palette):
        return palette[known.index(name)]
    return palette[zlib.crc32(name.encode()) % len(palette)]


def _many(names) -> bool:
    """Too many strategies for a legend inside the axes."""
    return pd.Series(names).nunique(dropna=False) > 4


def _outside_legend(fig, ax, ncols: int = 3) -> None:
    """The legend under the axes, for figures with many strategies."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, handlelength=1.4,
               columnspacing=1.0)


def _need(table: pd.DataFrame, columns, what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise NoData(f"{what}: the table has no {', '.join(missing)} column")
    return table


def _label(table: pd.DataFrame, extra: str = "") -> str:
    parts = [f"{e} · {s}" for e, s in table[["env", "scenario"]].drop_duplicates().itertuples(index=False)]
    seeds = table.groupby("strategy")["seed"].nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    head, tail = "; ".join(parts), f"({n} seeds{extra})"
    return f"{head}\n{tail}" if len(head) + len(tail) > 38 else f"{head} {tail}"  # fits COL


def _budget_axis(ax, x: str) -> None:
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("cumulative rollouts" if x == "cum_rollouts" else "cumulative generated tokens")


def _legend(ax, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, handlelength=1.4, borderaxespad=0.3, **kw)


# --- 1. accuracy against budget ---------------------------------------------------------------

def accuracy_vs_rollouts(table: pd.DataFrame, target: float | None = None,
                         x: str = "cum_rollouts", level: float = stats.LEVEL) -> plt.Figure:
    """Held-out accuracy against cumulative rollouts (or ``x="cum_tokens"``): the seed mean per
    strategy with its ``level`` Student-t confidence band over seeds, and the target as a
    dashed line. Lines: one per strategy, plus the target."""
    theme()
    _need(table, ["eval_acc", x], "accuracy curve")
    ev = table[table["eval_acc"].notna()]
    if ev.empty:
        raise NoData("accuracy curve: no evaluated steps (eval_acc is NaN everywhere)")
    curves = mean_curve(ev)
    band = stats.mean_band(ev, ["strategy", "step"], "eval_acc", level)
    many = _many(curves["strategy"])
    fig, ax = plt.subplots(figsize=(COL, 3.2 if many else 2.5), layout="constrained")
    for name in order(curves["strategy"]):
        c = curves[curves["strategy"] == name].merge(band, on=["strategy", "step"])
        ax.plot(c[x], c["eval_acc"], label=name, color=color(name))
        ax.fill_between(c[x], c["low"], c["high"], color=color(name), alpha=0.07 if many else 0.2, lw=0)
    if target is not None:
        ax.axhline(target, ls="--", color="0.35", lw=0.9, label=f"target {target:.3f}")
    _budget_axis(ax, x)
    ax.set(ylabel="held-out accuracy", title=_label(table, f", mean ± {level:.0%} CI"))
    if many:
        _outside_legend(fig, ax)
    else:
        _legend(ax, loc="lower right")
    return fig


def accuracy_vs_tokens(table: pd.DataFrame, target: float | None = None,
                       level: float = stats.LEVEL) -> plt.Figure:
    """``accuracy_vs_rollouts`` against cumulative generated tokens."""
    return accuracy_vs_rollouts(table, target, x="cum_tokens", level=level)


# --- 2. speed-ups -----------------------------------------------------------------------------

def speedup_bars(table: pd.DataFrame, target: float, references=REFERENCES,
                 n_boot: int = stats.N_BOOT, level: float = stats.LEVEL, seed: int = 0,
                 speedups: pd.DataFrame | None = None) -> plt.Figure:
    """Rollouts-to-target speed-up of each strategy over each reference present: one panel per
    reference, one horizontal bar per other strategy in its colour, with seed-bootstrap
    ``level`` intervals as error bars and the value written beside it. Bars: one per
    (strategy, reference) pair (length 0, marked "not reached", when either curve misses the
    target). ``speedups`` is ``stats.speedup_ci``'s table when already computed."""
    theme()
    if speedups is None:
        speedups = stats.speedup_ci(table, target, references, n_boot=n_boot, level=level, seed=seed)
    if speedups.empty:
        raise NoData(f"speed-ups: none of the references ({', '.join(references)}) is in the table")
    names = order(speedups["strategy"].tolist() + speedups["reference"].tolist())
    refs = [r for r in references if r in set(speedups["reference"])]
    finite = speedups[["speedup", "high"]].to_numpy(float)
    top = float(np.nanmax(np.r_[finite[np.isfinite(finite)], 1.0]))
    fig, axes = plt.subplots(1, len(refs), figsize=(COL, 0.75 + 0.24 * len(names)), sharey=True,
                             layout="constrained", squeeze=False)
    for ax, ref in zip(axes[0], refs):
        rows = speedups[speedups["reference"] == ref].set_index("strategy")
        for i, name in enumerate(names):
            if name == ref:
                ax.text(0.03 * top, i, "(reference)", va="center", ha="left", fontsize=6.5, color="0.45")
            if name not in rows.index:
                continue
            r = rows.loc[name]
            if not np.isfinite(r["speedup"]):
                ax.barh(i, 0, 0.7, color=color(name))
                ax.text(0.03 * top, i, "not reached", va="center", ha="left", fontsize=6.5, color="0.3")
                continue
            ax.barh(i, r["speedup"], 0.7, color=color(name))
            right = r["speedup"]
            if np.isfinite(r["low"]):
                ax.errorbar(r["speedup"], i, xerr=[[max(r["speedup"] - r["low"], 0)], [max(r["high"] - r["speedup"], 0)]],
                            color="0.15", lw=0.9, capsize=1.5)
                right = max(right, r["high"])
            ax.annotate(f"{r['speedup']:.2f}×", (right, i), xytext=(2, 0), textcoords="offset points",
                        va="center", ha="left", fontsize=6.5,
                        bbox={"fc": "white", "ec": "none", "pad": 0.3, "alpha": 0.8})
        ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_xlim(0, top * 1.35)  # room for the value labels
        ax.set_title(f"vs {ref}", fontsize=8.5)
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 5, 10]))  # 1.0 is a tick
    axes[0][0].set_yticks(range(len(names)), names)
    axes[0][0].set_ylim(len(names) - 0.5, -0.5)
    fig.supxlabel(f"speed-up in rollouts to target {target:.3f} (×)", fontsize=8.5)
    fig.suptitle(_label(table), fontsize=9)
    return fig


# --- 3. learning signal against group reward variance -----------------------------------------

def signal_vs_variance(table: pd.DataFrame, signal: str = "learn_signal", bins: int = 8) -> plt.Figure:
    """Per-step learning signal against the trained groups' mean reward variance, pooled over
    strategies: each step a faint dot coloured by strategy; the line is the median signal per
    equal-width variance bin (drawn at the bin's mean variance; bins of >= 5 steps) with its
    interquartile band. Lines: one (the binned median)."""
    theme()
    what = "learning signal against group variance"
    learn = [c for c in table.columns if c.startswith("learn_") and table[c].notna().any()]
    has = f"; the learner reports {', '.join(learn)}" if learn else "; no learn_* column has values"
    if signal not in table.columns:
        raise NoData(f"{what}: the table has no {signal} column{has}")
    rows = table[(table["step"] > 0) & table[signal].notna() & table["group_reward_var"].notna()]
    if len(rows) < 2:
        raise NoData(f"{what}: fewer than two training steps with both {signal} and group_reward_var{has}")
    fig, ax = plt.subplots(figsize=(COL, 2.5), layout="constrained")
    for name in order(rows["strategy"]):
        r = rows[rows["strategy"] == name]
        ax.scatter(r["group_reward_var"], r[signal], s=3, alpha=0.25, color=color(name), lw=0,
                   rasterized=True, label=name)
    edges = np.linspace(rows["group_reward_var"].min(), rows["group_reward_var"].max(), bins + 1)
    which = np.clip(np.digitize(rows["group_reward_var"], edges[1:-1]), 0, bins - 1)
    g = rows.groupby(which)
    binned = pd.DataFrame({"x": g["group_reward_var"].mean(), "med": g[signal].median(),
                           "q1": g[signal].quantile(0.25), "q3": g[signal].quantile(0.75), "n": g.size()})
    binned = binned.where(binned["n"] >= 5).reindex(range(bins))  # NaN rows break the line at gaps
    ax.plot(binned["x"], binned["med"], color="0.1", marker="o", ms=3, lw=1.2, label="binned median")
    ax.fill_between(binned["x"], binned["q1"], binned["q3"], color="0.1", alpha=0.15, lw=0)
    ylabel = "learning signal per step" if signal == "learn_signal" else signal.replace("_", " ")
    ax.set(xlabel="mean reward variance of trained groups", ylabel=ylabel,
           title=_label(rows, ", all strategies pooled"))
    leg = ax.legend(loc="upper left")
    for h in leg.legend_handles:
        if isinstance(h, matplotlib.collections.PathCollection):
            h.set_alpha(1)
            h.set_sizes([12])
    return fig


# --- 4. all-0 / all-1 prompts -----------------------------------------------------------------

def prompt_shares(table: pd.DataFrame, level: float = stats.LEVEL, window: int = 10) -> plt.Figure:
    """Three panels against cumulative rollouts, one line per strategy with its t-interval
    band over seeds: the share of held-out prompts the policy never solves (pass rate <= 0.05)
    and always solves (>= 0.95), and the share of trained groups with zero reward variance per
    step (rolling mean over ``window`` steps). Panels without data are left out. Lines: three
    per strategy."""
    theme()
    _need(table, ["eval_unsolved_share", "eval_solved_share", "zero_var_groups", "prompts_trained"],
          "prompt shares")
    ev = table[table["eval_unsolved_share"].notna() & table["eval_solved_share"].notna()]
    steps = table[(table["step"] > 0) & (table["prompts_trained"] > 0)].sort_values("step").copy()
    steps["zero_share"] = steps["zero_var_groups"] / steps["prompts_trained"]
    steps["zero_share"] = (steps.groupby(["strategy", "seed"])["zero_share"]
                           .transform(lambda s: s.rolling(window, min_periods=1).mean()))
    panels = [(ev, "eval_unsolved_share", "held-out prompts\nunsolved (all 0)"),
              (ev, "eval_solved_share", "held-out prompts\nsolved (all 1)"),
              (steps, "zero_share", "trained groups with\nzero variance")]
    panels = [p for p in panels if not p[0].empty]  # a real evaluator may not report the shares
    if not panels:
        raise NoData("prompt shares: no eval_solved_share / eval_unsolved_share values and no trained groups")
    many = _many(table["strategy"])
    extra = 0.8 if many else 0.0  # the legend below
    fig, axes = plt.subplots(len(panels), 1, figsize=(COL, 0.6 + extra + 1.33 * len(panels)), sharex=True,
                             layout="constrained", squeeze=False)
    axes = axes[:, 0]
    for ax, (data, col, ylabel) in zip(axes, panels):
        band = stats.mean_band(data, ["strategy", "step"], col, level)
        xs = data.groupby(["strategy", "step"])["cum_rollouts"].mean().rename("x").reset_index()
        band = band.merge(xs, on=["strategy", "step"])
        for name in order(band["strategy"]):
            b = band[band["strategy"] == name]
            ax.plot(b["x"], b["mean"], color=color(name), label=name)
            ax.fill_between(b["x"], b["low"], b["high"], color=color(name),
                            alpha=0.07 if many else 0.2, lw=0)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_ylim(bottom=0)
    _budget_axis(axes[-1], "cum_rollouts")
    axes[0].set_title(_label(table, f", mean ± {level:.0%} CI"))
    if many:
        _outside_legend(fig, axes[0])
    else:  # the solved share starts low: its lower right corner is free
        axes[1 if len(panels) == 3 else 0].legend(loc="lower right")
    return fig


# --- 5. budget anatomy ------------------------------------------------------------------------

ANATOMY = {  # segment -> (colour, hatch)
    "trained, informative": ("#4c9a6a", None),
    "trained, zero variance": ("#d1605e", None),
    "generated, not trained": ("#b8b8b8", None),
    "pilot (screening)": ("#8172b3", "////"),
    "main / commit": ("#c9c2e3", "////"),
}


def anatomy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, per-step means (averaged per run, then over runs) of the generated
    rollouts split two ways -- by use: trained with non-zero variance / trained in zero-variance
    groups / generated but not trained on this step; by kind: pilot / main -- plus reused
    (trained, not generated) rollouts and generation rounds with a t-interval over seeds.
    Zero-variance rollouts are zero_var_groups x the step's mean trained group size."""
    _need(table, ["step_rollouts", "pilot_rollouts", "trained_rollouts", "reused_rollouts", "rounds",
                  "zero_var_groups", "prompts_trained"], "budget anatomy")
    t = table[table["step"] > 0].copy()
    if t.empty:
        raise NoData("budget anatomy: no training steps")
    size = (t["trained_rollouts"] / t["prompts_trained"].where(t["prompts_trained"] > 0)).fillna(0)
    generated_trained = t["trained_rollouts"] - t["reused_rollouts"]
    t["zero"] = np.minimum(t["zero_var_groups"] * size, generated_trained)
    t["informative"] = generated_trained - t["zero"]
    t["untrained"] = t["step_rollouts"] - generated_trained
    t["main"] = t["step_rollouts"] - t["pilot_rollouts"]
    cols = ["step_rollouts", "informative", "zero", "untrained", "pilot_rollouts", "main",
            "reused_rollouts", "rounds"]
    runs = t.groupby(["strategy", "seed"])[cols].mean().reset_index()
    out = runs.groupby("strategy")[cols].mean()
    # a pilot drawn in one step and trained in a later one can make a run's "untrained" mean
    # slightly negative only through rounding; clip so the stack adds up to the generated total
    out["untrained"] = out["untrained"].clip(lower=0)
    rounds = stats.mean_band(runs, ["strategy"], "rounds").set_index("strategy")
    out["rounds_low"], out["rounds_high"] = rounds["low"], rounds["high"]
    return out.loc[order(out.index)]


def budget_anatomy(table: pd.DataFrame, level: float = stats.LEVEL) -> plt.Figure:
    """Left: per strategy two horizontal stacked bars of the mean rollouts generated per step
    -- upper by use (trained informative / trained zero-variance / not trained), lower by
    kind (pilot / main); a hatched cap marks trained rollouts reused from a cache (not
    generated). Right: generation rounds per step with t-interval error bars over seeds.
    Bars: 5 per strategy on the left (one more where rollouts were reused), 1 on the right."""
    theme()
    a = anatomy_table(table)
    names = list(a.index)
    fig, (left, right) = plt.subplots(1, 2, figsize=(COL, 1.25 + 0.36 * len(names)), sharey=True,
                                      width_ratios=[2.6, 1], layout="constrained")
    h = 0.36
    reused_label = "use: trained, reused (free)"
    for i, name in enumerate(names):
        r = a.loc[name]
        base = 0.0
        for seg, col in [("trained, informative", "informative"), ("trained, zero variance", "zero"),
                         ("generated, not trained", "untrained")]:
            left.barh(i - h / 2 - 0.01, r[col], h, left=base, color=ANATOMY[seg][0],
                      label=f"use: {seg}" if i == 0 else None)
            base += r[col]
        if r["reused_rollouts"] > 0:
            left.barh(i - h / 2 - 0.01, r["reused_rollouts"], h, left=base, color="white",
                      edgecolor=ANATOMY["trained, informative"][0], hatch="xxx", lw=0.6,
                      label=reused_label if reused_label not in left.get_legend_handles_labels()[1] else None)
        base = 0.0
        for seg, col in [("pilot (screening)", "pilot_rollouts"), ("main / commit", "main")]:
            left.barh(i + h / 2 + 0.01, r[col], h, left=base, color=ANATOMY[seg][0],
                      label=f"kind: {seg}" if i == 0 else None)
            base += r[col]
        left.annotate(f"{r['step_rollouts']:,.0f}", (r["step_rollouts"] + max(r["reused_rollouts"], 0), i),
                      xytext=(2, 0), textcoords="offset points", va="center", ha="left", fontsize=6.5)
    left.set_yticks(range(len(names)), names)
    left.set_ylim(len(names) - 0.5, -0.5)
    left.set_xlim(0, (a["step_rollouts"] + a["reused_rollouts"]).max() * 1.3)
    left.xaxis.set_major_formatter(EngFormatter(sep=""))
    left.xaxis.set_major_locator(MaxNLocator(4))
    left.set_xlabel("rollouts per step (mean)")
    left.grid(axis="y", visible=False)
    err = np.array([a["rounds"] - a["rounds_low"], a["rounds_high"] - a["rounds"]]).clip(min=0)
    right.barh(range(len(names)), a["rounds"], 0.55, color=[color(n) for n in names],
               xerr=np.nan_to_num(err), capsize=1.5, error_kw={"lw": 0.9})
    for i, (v, hi) in enumerate(zip(a["rounds"], a["rounds_high"].fillna(a["rounds"]))):
        right.annotate(f"{v:.2f}", (max(v, hi), i), xytext=(2, 0), textcoords="offset points",
                       va="center", ha="left", fontsize=6.5)
    right.set_xlim(0, a["rounds_high"].fillna(a["rounds"]).max() * 1.6)
    right.xaxis.set_major_locator(MaxNLocator(3, integer=True))
    right.set_xlabel("rounds / step")
    right.grid(axis="y", visible=False)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=6.5, columnspacing=0.8,
               handlelength=1.2)
    fig.suptitle(_label(table), fontsize=9)
    return fig


# --- 6. pilot-fraction ablation ---------------------------------------------------------------

def pilot_fraction_ablation(table: pd.DataFrame, target: float, param: str = "pilot_fraction",
                            references=REFERENCES, n_boot: int = stats.N_BOOT,
                            level: float = stats.LEVEL, seed: int = 0) -> plt.Figure:
    """Rollouts to ``target`` against the hyper-parameter ``param`` (hp_<param>), one line per
    strategy that has it, with seed-bootstrap ``level`` error bars; references (strategies
    without the parameter) are horizontal lines with their interval as a band. The table must
    hold one configuration per (strategy, value). Lines: one per strategy with the parameter,
    plus one per reference present."""
    theme()
    col = f"hp_{param}"
    _need(table, [col], f"{param} ablation")
    arms = table[table[col].notna()]
    if arms[col].nunique() < 2:
        raise NoData(f"{param} ablation: fewer than two values of {col} in the tables")
    fig, ax = plt.subplots(figsize=(COL, 2.5), layout="constrained")
    ymax = 0.0
    for name in order(arms["strategy"]):
        rows = []
        for value, arm in arms[arms["strategy"] == name].groupby(col):
            pt, boot = stats.rollouts_to_target(arm, target, n_boot=n_boot, seed=seed)
            lo, hi = stats.percentile_interval(boot[name], level)
            rows.append((float(value), pt[name], lo, hi))
        r = pd.DataFrame(rows, columns=["value", "pt", "lo", "hi"])
        ok = r[np.isfinite(r["pt"])]
        ax.errorbar(ok["value"], ok["pt"], yerr=[(ok["pt"] - ok["lo"]).clip(lower=0).fillna(0),
                                                 (ok["hi"] - ok["pt"]).clip(lower=0).fillna(0)],
                    color=color(name), marker="o", ms=4, capsize=2, lw=1.4, label=name)
        ymax = max(ymax, np.nanmax(np.r_[ok["hi"], ok["pt"], 0]))
        for v in r.loc[~np.isfinite(r["pt"]), "value"]:
            ax.annotate("not reached", (v, 1.0), xycoords=("data", "axes fraction"), ha="center",
                        va="top", fontsize=6, color=color(name), rotation=90)
    others = table[table[col].isna()]
    present = set(pd.unique(others["strategy"]))
    for ref in [r for r in references if r in present]:
        pt, boot = stats.rollouts_to_target(others[others["strategy"] == ref], target,
                                            n_boot=n_boot, seed=seed)
        if not np.isfinite(pt[ref]):
            continue
        lo, hi = stats.percentile_interval(boot[ref], level)
        ax.axhline(pt[ref], color=color(ref), ls="--", lw=1.1, label=ref)
        if np.isfinite(lo):
            ax.axhspan(lo, hi, color=color(ref), alpha=0.12, lw=0)
        ymax = max(ymax, np.nanmax([pt[ref], hi]))
    ax.set_ylim(0, ymax * 1.12 if ymax > 0 else 1)
    # every value tried, reached or not: annotations alone do not widen the axis
    values = arms[col].astype(float)
    pad = 0.08 * (values.max() - values.min())
    ax.set_xlim(values.min() - pad, values.max() + pad)
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set(xlabel=param.replace("_", " "), ylabel="rollouts to target",
           title=_label(table, f", target {target:.3f}"))
    _legend(ax, loc="lower right", ncols=3)
    return fig


def trials_vs_param(trials: pd.DataFrame, param: str = "pilot_fraction",
                    title: str | None = None) -> plt.Figure:
    """An Optuna trials table (``study.trials_dataframe()``: params_<name>, value, state):
    each completed trial's objective value against ``param``; where the table has
    user_attrs_seeds_reached (``allocbench tune``), trials that missed the target on a seed are
    hollow. Lines: none (scatters only)."""
    theme()
    col = f"params_{param}"
    _need(trials, [col, "value"], f"{param} trials")
    t = trials
    if "state" in t.columns:
        t = t[t["state"].astype(str).str.upper().isin(["COMPLETE", "TRIALSTATE.COMPLETE"])]
    t = t[t[col].notna() & t["value"].notna()]
    if len(t) < 2:
        raise NoData(f"{param} trials: fewer than two completed trials with {col}")
    fig, ax = plt.subplots(figsize=(COL, 2.4), layout="constrained")
    c = color("pilot_commit")
    if "user_attrs_seeds_reached" in t.columns and t["user_attrs_seeds_reached"].notna().any():
        full = t["user_attrs_seeds_reached"] >= t["user_attrs_seeds_reached"].max()
        ax.scatter(t.loc[full, col], t.loc[full, "value"], s=14, color=c, lw=0, label="all seeds reached")
        ax.scatter(t.loc[~full, col], t.loc[~full, "value"], s=14, facecolor="none", edgecolor=c, lw=0.8,
                   label="a seed missed (penalised)")
        fig.legend(loc="outside lower center", ncols=2)
    else:
        ax.scatter(t[col], t["value"], s=14, color=c, alpha=0.8, lw=0)
    if t["value"].min() > 0 and t["value"].max() / t["value"].min() > 5:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set(xlabel=param.replace("_", " "), ylabel="trial objective (value)",
           title=title or f"Optuna trials ({len(t)} complete)")
    return fig


# --- 7. sim vs real ranking -------------------------------------------------------------------

def sim_vs_real_ranks(table: pd.DataFrame, targets: dict | None = None, n_boot: int = stats.N_BOOT,
                      level: float = stats.LEVEL, seed: int = 0, agreement: dict | None = None) -> plt.Figure:
    """Each strategy's rank by rollouts-to-target in the sim (x) against its rank in real (y),
    each at its own target (``targets[env]``, default: grpo's peak seed-mean accuracy), with
    Kendall's tau and its seed-bootstrap interval. The table holds env=sim and env=real rows
    of one scenario each. Lines: the diagonal."""
    theme()
    envs = set(pd.unique(table["env"]))
    if not {"sim", "real"} <= envs:
        raise NoData("sim-vs-real ranking: needs both env=sim and env=real rows")
    parts = {e: table[table["env"] == e] for e in ("sim", "real")}
    for e, p in parts.items():
        if p["scenario"].nunique() > 1:
            raise ValueError(f"sim-vs-real ranking: several {e} scenarios; select one of each")
    targets = dict(targets or {})  # a side without one: grpo's peak, recomputed in every draw
    if agreement is None:
        try:
            agreement = stats.rank_agreement(parts["sim"], parts["real"], targets.get("sim"), targets.get("real"),
                                             n_boot=n_boot, level=level, seed=seed)
        except ValueError as err:
            raise NoData(f"sim-vs-real ranking: {err}") from None
    a = agreement
    k = len(a["strategies"])
    fig, ax = plt.subplots(figsize=(COL * 0.8, COL * 0.8), layout="constrained")
    ax.plot([0.5, k + 0.5], [0.5, k + 0.5], color="0.6", ls="--", lw=0.8)
    for name, xs, ys in zip(a["strategies"], a["sim_rank"], a["real_rank"]):
        ax.scatter(xs, ys, s=36, color=color(name), zorder=3)
        ax.annotate(name, (xs, ys), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set(xlim=(0.5, k + 0.5), ylim=(k + 0.5, 0.5), xticks=range(1, k + 1), yticks=range(1, k + 1),
           xlabel=f"rank in sim ({parts['sim']['scenario'].iloc[0]})",
           ylabel=f"rank in real ({parts['real']['scenario'].iloc[0]})")
    ci = f"[{a['low']:.2f}, {a['high']:.2f}]" if np.isfinite(a["low"]) else "n/a"
    ax.set_title(f"Kendall τ = {a['tau']:.2f}, {level:.0%} CI {ci}")
    return fig


def pass_rate_histogram(probe: pd.DataFrame, before: pd.DataFrame | None = None, bins: int = 10) -> plt.Figure:
    """The distribution of measured pass rates (``allocbench probe``), one panel per difficulty
    level when the environment knows one (``prompt_difficulty``), else one panel; with
    ``before``, that probe's distribution drawn behind (e.g. the initial policy vs a trained one)."""
    theme()
    _need(probe, ["pass_rate"], "pass-rate histogram")
    key = "prompt_difficulty" if "prompt_difficulty" in probe.columns else None
    levels = sorted(probe[key].dropna().unique()) if key else [None]
    cols = min(4, len(levels))
    rows = int(np.ceil(len(levels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(COL * min(cols, 2), 1.5 * rows + 0.4), squeeze=False,
                             sharex=True)
    edges = np.linspace(0, 1, bins + 1)
    for ax, level in zip(axes.ravel(), levels):
        for table, label, alpha in ([(before, "before", 0.45)] if before is not None else []) + [
                (probe, "after" if before is not None else str(probe["source"].iloc[0])
                 if "source" in probe.columns else "probe", 0.8)]:
            part = table if level is None or key not in table.columns else table[table[key] == level]
            if len(part):
                ax.hist(part["pass_rate"], bins=edges, weights=np.full(len(part), 1 / len(part)),
                        alpha=alpha, label=label)
        ax.set_title("all prompts" if level is None else f"level {level:g}", fontsize=7.5)
        ax.yaxis.set_major_locator(MaxNLocator(3))
    for ax in axes.ravel()[len(levels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(f"pass rate ({int(probe['k'].iloc[0])} samples)")
    axes[0][0].set_ylabel("share of prompts")
    axes[0][0].legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def trained_by_difficulty(groups: pd.DataFrame, bins: int = 10) -> plt.Figure:
    """Where each strategy's trained rollouts went, from the per-group log (groups.parquet): the
    share of its trained rollouts by what the environment knew of the prompt when it was
    sampled (its arithmetic level in real runs, its true pass rate in the simulator), beside the
    share of all generated rollouts, so screening's shift toward informative prompts shows."""
    theme()
    if "prompt_difficulty" in groups.columns and groups["prompt_difficulty"].notna().any():
        key, label = groups["prompt_difficulty"], "difficulty level of the prompt"
    elif "prompt_pass_rate" in groups.columns:
        edges = np.linspace(0, 1, bins + 1)
        key = pd.Series((edges[:-1] + 0.5 / bins)[np.clip(np.digitize(groups["prompt_pass_rate"], edges) - 1, 0, bins - 1)],
                        index=groups.index)
        label = "true pass rate of the prompt when sampled"
    else:
        raise NoData("the groups log has no prompt_difficulty or prompt_pass_rate column")
    g = groups.assign(_key=key)
    generated = g[g["kind"] != "reused"]
    fig, axes = plt.subplots(1, 2, figsize=(2 * COL, 2.2), sharey=True, layout="constrained")
    for ax, part, title in ((axes[0], generated, "all generated rollouts"),
                            (axes[1], g[g["trained"]], "trained rollouts")):
        for name in order(part["strategy"].unique()):
            mine = part[part["strategy"] == name]
            share = mine.groupby("_key")["n"].sum() / mine["n"].sum()
            ax.plot(share.index, share.values, marker="o", ms=2.5, color=color(name), label=name)
        ax.set_title(title)
        ax.set_xlabel(label)
    axes[0].set_ylabel("share of rollouts")
    _outside_legend(fig, axes[0], ncols=4)
    return fig


# where a point's label may go, in offset points from it, tried in order: right above, right
# below, left above, left below, then further out
MARKER_RADIUS = 3.0  # points: the scatter markers' (s = 30 points^2) and a little room
LABEL_SPOTS = [(4, 3, "left"), (4, -9, "left"), (-4, 3, "right"), (-4, -9, "right"),
               (4, 10, "left"), (4, -16, "left"), (-4, 10, "right"), (-4, -16, "right")]


def _label_points(ax, names, xs, ys) -> None:
    """One label per distinct point (the names of the strategies drawn there, joined), each at
    the first of ``LABEL_SPOTS`` where it overlaps no label placed before it (top to bottom),
    else at the first. Call it after the axes' limits are set: it lays the figure out to
    measure the labels."""
    points: dict[tuple[float, float], list[str]] = {}
    for name, x, y in zip(names, xs, ys):
        points.setdefault((round(float(x), 9), round(float(y), 9)), []).append(name)
    ax.figure.draw_without_rendering()  # the layout, so the labels' extents are final
    renderer = ax.figure.canvas.get_renderer()
    at = dict(zip(points, ax.transData.transform(list(points))))  # each point in pixels
    # every point's marker is in the way too, so no label sits on another strategy's point
    reach = renderer.points_to_pixels(MARKER_RADIUS)
    placed = [Bbox.from_extents(px - reach, py - reach, px + reach, py + reach) for px, py in at.values()]
    for point, ns in sorted(points.items(), key=lambda p: (-at[p[0]][1], at[p[0]][0])):  # top down

        def label_at(spot):
            dx, dy, ha = spot
            label = ax.annotate(", ".join(ns), point, xytext=(dx, dy), textcoords="offset points",
                                fontsize=6.5, ha=ha)
            return label, label.get_window_extent(renderer)

        for spot in LABEL_SPOTS:
            label, box = label_at(spot)
            if not any(box.overlaps(other) for other in placed):
                break
            label.remove()
        else:  # no free spot: the first
            label, box = label_at(LABEL_SPOTS[0])
        placed.append(box)


def sim_vs_real_speedups(validation: pd.DataFrame, agreement: dict) -> plt.Figure:
    """``allocbench validate``'s figure from ``analysis.validate.validate``'s two results. Left:
    each strategy's speed-up over the reference in the simulator (x) against the real one (y),
    log-log, with the seed-bootstrap intervals as error bars and the diagonal (perfect
    agreement); a strategy that never reaches a side's target is drawn hollow on that side's
    "not reached" line at the axis edge. Right: its rank in the simulator against its rank in
    the real runs (1 = fewest rollouts; the diagonal), titled with Kendall's tau, its interval
    and the ceiling's (the interval of a simulator that ranks exactly as the real point estimate)."""
    theme()
    v = validation
    if len(v) < 2:
        raise NoData("sim-vs-real speed-ups: fewer than two strategies")
    a = agreement
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * COL, 0.9 * COL + 0.3), layout="constrained")

    values = v[["sim_speedup", "sim_low", "sim_high", "real_speedup", "real_low", "real_high"]].to_numpy(float)
    finite = values[np.isfinite(values) & (values > 0)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (1.0, 1.0)
    lo, hi = min(lo, 1.0) / 1.3, max(hi, 1.0) * 1.3
    missing = not (np.isfinite(v["sim_speedup"]).all() and np.isfinite(v["real_speedup"]).all())
    floor = lo / 1.25 if missing else lo
    lim = (floor / 1.15 if missing else lo, hi)
    left.plot(lim, lim, color="0.6", ls="--", lw=0.8, zorder=1)
    xs, ys = [], []
    for r in v.itertuples(index=False):
        x = r.sim_speedup if np.isfinite(r.sim_speedup) else floor
        y = r.real_speedup if np.isfinite(r.real_speedup) else floor
        xs.append(x)
        ys.append(y)
        reached = np.isfinite(r.sim_speedup) and np.isfinite(r.real_speedup)
        kw = {"color": color(r.strategy)}
        xerr = ([[max(x - r.sim_low, 0)], [max(r.sim_high - x, 0)]]
                if np.isfinite(r.sim_speedup) and np.isfinite(r.sim_low) else None)
        yerr = ([[max(y - r.real_low, 0)], [max(r.real_high - y, 0)]]
                if np.isfinite(r.real_speedup) and np.isfinite(r.real_low) else None)
        if xerr is not None or yerr is not None:
            left.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor=kw["color"], elinewidth=0.9,
                          capsize=1.5, zorder=2)
        left.scatter(x, y, s=30, zorder=3, facecolors=kw["color"] if reached else "white",
                     edgecolors=kw["color"], linewidths=1.2)
    if missing:
        for line in (left.axvline, left.axhline):
            line(floor, color="0.75", lw=0.6, ls=":", zorder=0)
        left.annotate("not reached", (floor, lim[1]), xytext=(2, -2), textcoords="offset points",
                      fontsize=6, color="0.45", rotation=90, va="top", ha="left")
    left.set(xscale="log", yscale="log", xlim=lim, ylim=lim, aspect="equal",
             xlabel=f"simulated speed-up over {a['reference']} (×)",
             ylabel=f"real speed-up over {a['reference']} (×)")
    for axis in (left.xaxis, left.yaxis):
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda t, _: f"{t:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_title(f"rollouts of {a['reference']} / rollouts of the strategy", fontsize=8)

    k = len(v)
    right.plot([0.5, k + 0.5], [0.5, k + 0.5], color="0.6", ls="--", lw=0.8, zorder=1)
    for r in v.itertuples(index=False):
        right.scatter(r.sim_rank, r.real_rank, s=30, color=color(r.strategy), zorder=3)
    right.set(xlim=(0.5, k + 0.5), ylim=(k + 0.5, 0.5), xticks=range(1, k + 1), yticks=range(1, k + 1),
              aspect="equal", xlabel="rank in the simulator", ylabel="rank in the real runs")
    ci = f"[{a['low']:.2f}, {a['high']:.2f}]" if np.isfinite(a["low"]) else "n/a"
    ceiling = f"[{a['ceiling_low']:.2f}, {a['ceiling_high']:.2f}]" if np.isfinite(a["ceiling_low"]) else "n/a"
    right.set_title(f"Kendall τ = {a['tau']:.2f}, {a['level']:.0%} CI {ci}\n"
                    f"a perfect simulator's CI at these real seeds: {ceiling}", fontsize=8)
    fig.suptitle(f"sim: {a['sim_scenario']} (target {a['sim_target']:.3f})  vs  real: {a['real_scenario']} "
                 f"(target {a['real_target']:.3f})", fontsize=8.5)
    _label_points(left, v["strategy"], xs, ys)
    _label_points(right, v["strategy"], v["sim_rank"], v["real_rank"])
    return fig


def replicate_taus(replicates: pd.DataFrame, agreement: dict) -> plt.Figure:
    """``allocbench validate``'s yardstick (``analysis.validate.replicates``): Kendall's tau
    against the number of seeds a side, between two disjoint sets of real seeds (how well the
    real runs agree with themselves) and between simulated and real seeds, each the mean over
    the random splits with the middle of the splits shaded (empty, and saying why, when the real
    runs have one seed: nothing to split)."""
    theme()
    r = replicates
    fig, ax = plt.subplots(figsize=(COL, 0.8 * COL), layout="constrained")
    if r.empty:
        ax.text(0.5, 0.5, "the real runs have one seed: nothing to split", ha="center", va="center",
                transform=ax.transAxes, fontsize=8)
    for side, label, shade in (("real", "real seeds vs other real seeds", "0.25"),
                               ("sim", "simulated seeds vs real seeds", "tab:blue")):
        ax.fill_between(r["seeds_per_side"], r[f"{side}_low"], r[f"{side}_high"], color=shade, alpha=0.15, lw=0)
        ax.plot(r["seeds_per_side"], r[f"{side}_tau"], marker="o", ms=3, color=shade, label=label)
    ax.axhline(0, color="0.7", lw=0.6, ls=":")
    lows = r[["real_low", "sim_low"]].to_numpy(float)
    bottom = min(-0.25, float(np.nanmin(lows)) - 0.05) if np.isfinite(lows).any() else -1.02
    ax.set(xlabel="seeds a side", ylabel="Kendall τ of the two rankings", ylim=(bottom, 1.02))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    level = agreement.get("level", stats.LEVEL)
    splits = int(r["splits"].iloc[0]) if len(r) else 0
    ax.set_title(f"{agreement['n_strategies']} strategies; mean over {splits} splits, "
                 f"middle {level:.0%} shaded\nsim: {agreement['sim_scenario']}  real: {agreement['real_scenario']}",
                 fontsize=7.5)
    if not r.empty:
        _legend(ax, loc="lower right", fontsize=7)
    return fig


def sim_vs_real_differences(paired: pd.DataFrame) -> plt.Figure:
    """``allocbench validate``'s paired differences (``analysis.validate.paired``) as one panel:
    each strategy's held-out accuracy minus the reference's at equal rollouts in the real runs
    (x) against the simulator (y), with both sides' t-intervals over seeds as error bars, the
    zero lines and the diagonal. A point is filled where the real interval excludes 0 (a
    difference the real seeds resolve) and hollow where it does not; strategies that ran as the
    reference on both sides (every difference 0) or whose runs miss the window are left out and
    named below the panel."""
    theme()
    drawn = paired[np.isfinite(paired["sim_diff"]) & np.isfinite(paired["real_diff"])
                   & ~((paired["sim_verdict"] == "same runs") & (paired["real_verdict"] == "same runs"))]
    ref = paired["reference"].iloc[0]
    fig, ax = plt.subplots(figsize=(COL, COL + 0.3), layout="constrained")
    bounds = np.abs(drawn[["sim_low", "sim_high", "real_low", "real_high"]].to_numpy(float))
    span = float(bounds.max()) if bounds.size and bounds.max() > 0 else 0.01
    lim = (-1.1 * span, 1.1 * span)
    ax.plot(lim, lim, color="0.6", ls="--", lw=0.8, zorder=1)
    for line in (ax.axhline, ax.axvline):
        line(0, color="0.75", lw=0.6, zorder=0)
    for r in drawn.itertuples(index=False):
        c = color(r.strategy)
        ax.errorbar(r.real_diff, r.sim_diff, xerr=[[r.real_diff - r.real_low], [r.real_high - r.real_diff]],
                    yerr=[[r.sim_diff - r.sim_low], [r.sim_high - r.sim_diff]], fmt="none", ecolor=c,
                    elinewidth=0.9, capsize=1.5, zorder=2)
        resolved = r.real_verdict in ("better", "worse")
        ax.scatter(r.real_diff, r.sim_diff, s=30, zorder=3, facecolors=c if resolved else "white",
                   edgecolors=c, linewidths=1.2)
    ax.set(xlim=lim, ylim=lim, aspect="equal", xlabel=f"real: accuracy − {ref}'s at equal rollouts",
           ylabel=f"simulated: accuracy − {ref}'s")
    ax.set_title("filled: the real seeds resolve it", fontsize=8)
    left_out = paired[~paired["strategy"].isin(drawn["strategy"])]["strategy"].tolist()
    if left_out:
        fig.text(0.5, 0.0, "not drawn (same runs or no overlap): " + ", ".join(left_out), ha="center",
                 va="bottom", fontsize=6, color="0.45", wrap=True)
    _label_points(ax, drawn["strategy"], drawn["real_diff"], drawn["sim_diff"])
    return fig
