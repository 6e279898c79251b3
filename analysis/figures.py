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
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

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


def color(name: str):
    """A strategy's colour, the same in every figure and every report."""
    palette = sns.color_palette("colorblind", 10)
    if name in KNOWN:
        return palette[KNOWN.index(name)]
    return palette[len(KNOWN) + zlib.crc32(name.encode()) % (10 - len(KNOWN))]


def _need(table: pd.DataFrame, columns, what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise NoData(f"{what}: the table has no {', '.join(missing)} column")
    return table


def _label(table: pd.DataFrame, extra: str = "") -> str:
    parts = [f"{e} · {s}" for e, s in table[["env", "scenario"]].drop_duplicates().itertuples(index=False)]
    seeds = table.groupby("strategy")["seed"].nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    return f"{'; '.join(parts)} ({n} seeds{extra})"


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
    fig, ax = plt.subplots(figsize=(COL, 2.5), layout="constrained")
    for name in order(curves["strategy"]):
        c = curves[curves["strategy"] == name].merge(band, on=["strategy", "step"])
        ax.plot(c[x], c["eval_acc"], label=name, color=color(name))
        ax.fill_between(c[x], c["low"], c["high"], color=color(name), alpha=0.2, lw=0)
    if target is not None:
        ax.axhline(target, ls="--", color="0.35", lw=0.9, label=f"target {target:.3f}")
    _budget_axis(ax, x)
    ax.set(ylabel="held-out accuracy", title=_label(table, f", mean ± {level:.0%} CI"))
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
    """Rollouts-to-target speed-up of each strategy over each reference present (one colour
    per reference), with seed-bootstrap ``level`` intervals as error bars. Bars: one per
    (strategy, reference) pair whose speed-up is defined (both reach the target).
    ``speedups`` is ``stats.speedup_ci``'s table when already computed."""
    theme()
    if speedups is None:
        speedups = stats.speedup_ci(table, target, references, n_boot=n_boot, level=level, seed=seed)
    if speedups.empty:
        raise NoData(f"speed-ups: none of the references ({', '.join(references)}) is in the table")
    names = order(speedups["strategy"])
    refs = [r for r in references if r in set(speedups["reference"])]
    width = 0.8 / len(refs)
    hatches = [None, "////", "xxxx", "...."]
    fig, ax = plt.subplots(figsize=(COL, 2.4), layout="constrained")
    top = 1.0
    for k, ref in enumerate(refs):
        rows = speedups[speedups["reference"] == ref].set_index("strategy")
        for i, name in enumerate(names):
            xpos = i + (k - (len(refs) - 1) / 2) * width
            if name not in rows.index:
                continue
            r = rows.loc[name]
            if not np.isfinite(r["speedup"]):
                ax.text(xpos, 0.04, "not\nreached", ha="center", va="bottom", fontsize=6, color="0.3")
                continue
            ax.bar(xpos, r["speedup"], width * 0.9, color=color(name), alpha=1.0 if k == 0 else 0.55,
                   hatch=hatches[k % len(hatches)], edgecolor="white", lw=0)
            if np.isfinite(r["low"]):
                ax.errorbar(xpos, r["speedup"], yerr=[[max(r["speedup"] - r["low"], 0)],
                                                      [max(r["high"] - r["speedup"], 0)]],
                            color="0.15", lw=0.9, capsize=2)
            hi = max(r["high"], r["speedup"]) if np.isfinite(r["high"]) else r["speedup"]
            ax.text(xpos, hi + 0.02 * top, f"{r['speedup']:.2f}×", ha="center", va="bottom", fontsize=6.5)
            top = max(top, hi)
    ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, top * 1.18)
    ax.set(ylabel="speed-up in rollouts\nto target (×)", title=_label(table, f", target {target:.3f}"))
    proxies = [matplotlib.patches.Patch(facecolor="0.45", alpha=1.0 if k == 0 else 0.55,
                                        hatch=hatches[k % len(hatches)], edgecolor="white", lw=0)
               for k in range(len(refs))]
    ax.legend(proxies, [f"vs {r}" for r in refs], loc="upper left", ncols=len(refs))
    return fig


# --- 3. learning signal against group reward variance -----------------------------------------

def signal_vs_variance(table: pd.DataFrame, signal: str = "learn_signal", bins: int = 8) -> plt.Figure:
    """Per-step learning signal against the trained groups' mean reward variance, pooled over
    strategies: each step a faint dot coloured by strategy; the line is the median signal per
    equal-width variance bin with its interquartile band. Lines: one (the binned median)."""
    theme()
    _need(table, [signal, "group_reward_var"], "learning signal against group variance")
    rows = table[(table["step"] > 0) & table[signal].notna() & table["group_reward_var"].notna()]
    if len(rows) < 2:
        raise NoData(f"learning signal against group variance: fewer than two steps with {signal}")
    fig, ax = plt.subplots(figsize=(COL, 2.5), layout="constrained")
    for name in order(rows["strategy"]):
        r = rows[rows["strategy"] == name]
        ax.scatter(r["group_reward_var"], r[signal], s=3, alpha=0.25, color=color(name), lw=0,
                   rasterized=True, label=name)
    edges = np.linspace(rows["group_reward_var"].min(), rows["group_reward_var"].max(), bins + 1)
    which = np.clip(np.digitize(rows["group_reward_var"], edges[1:-1]), 0, bins - 1)
    g = rows.groupby(which)[signal]
    binned = pd.DataFrame({"mid": (edges[:-1] + edges[1:])[g.median().index] / 2, "med": g.median(),
                           "q1": g.quantile(0.25), "q3": g.quantile(0.75), "n": g.size()})
    binned = binned[binned["n"] >= 3]
    ax.plot(binned["mid"], binned["med"], color="0.1", marker="o", ms=3, label="binned median")
    ax.fill_between(binned["mid"], binned["q1"], binned["q3"], color="0.1", alpha=0.15, lw=0)
    ax.set(xlabel="mean reward variance of trained groups", ylabel=signal.replace("_", " "),
           title=_label(rows, ", all strategies pooled"))
    leg = ax.legend(loc="upper left", markerscale=3)
    for h in leg.legend_handles:
        h.set_alpha(1)
    return fig


# --- 4. all-0 / all-1 prompts -----------------------------------------------------------------

def prompt_shares(table: pd.DataFrame, level: float = stats.LEVEL, window: int = 5) -> plt.Figure:
    """Three panels against cumulative rollouts, one line per strategy with its t-interval
    band over seeds: the share of held-out prompts the policy never solves (pass rate <= 0.05)
    and always solves (>= 0.95), and the share of trained groups with zero reward variance per
    step (rolling mean over ``window`` steps). Lines: three per strategy."""
    theme()
    _need(table, ["eval_unsolved_share", "eval_solved_share", "zero_var_groups", "prompts_trained"],
          "prompt shares")
    ev = table[table["eval_unsolved_share"].notna() & table["eval_solved_share"].notna()]
    if ev.empty:
        raise NoData("prompt shares: eval_solved_share / eval_unsolved_share are NaN everywhere")
    steps = table[(table["step"] > 0) & (table["prompts_trained"] > 0)].sort_values("step").copy()
    steps["zero_share"] = steps["zero_var_groups"] / steps["prompts_trained"]
    steps["zero_share"] = (steps.groupby(["strategy", "seed"])["zero_share"]
                           .transform(lambda s: s.rolling(window, min_periods=1).mean()))
    fig, axes = plt.subplots(3, 1, figsize=(COL, 4.6), sharex=True, layout="constrained")
    panels = [(ev, "eval_unsolved_share", "held-out prompts\nunsolved (all 0)"),
              (ev, "eval_solved_share", "held-out prompts\nsolved (all 1)"),
              (steps, "zero_share", "trained groups with\nzero variance")]
    for ax, (data, col, ylabel) in zip(axes, panels):
        band = stats.mean_band(data, ["strategy", "step"], col, level)
        xs = data.groupby(["strategy", "step"])["cum_rollouts"].mean().rename("x").reset_index()
        band = band.merge(xs, on=["strategy", "step"])
        for name in order(band["strategy"]):
            b = band[band["strategy"] == name]
            ax.plot(b["x"], b["mean"], color=color(name), label=name)
            ax.fill_between(b["x"], b["low"], b["high"], color=color(name), alpha=0.2, lw=0)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_ylim(bottom=0)
    _budget_axis(axes[-1], "cum_rollouts")
    axes[0].set_title(_label(table, f", mean ± {level:.0%} CI"))
    axes[0].legend(loc="upper right", ncols=min(3, len(band["strategy"].unique())))
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
    """Top: per strategy two stacked bars of the mean rollouts generated per step -- left by
    use (trained informative / trained zero-variance / not trained), right by kind (pilot /
    main); a hatched cap marks trained rollouts reused from a cache (not generated).
    Bottom: generation rounds per step with t-interval error bars over seeds."""
    theme()
    a = anatomy_table(table)
    names = list(a.index)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(COL, 3.9), height_ratios=[2.3, 1],
                                      layout="constrained")
    w = 0.36
    for i, name in enumerate(names):
        r = a.loc[name]
        base = 0.0
        for seg, col in [("trained, informative", "informative"), ("trained, zero variance", "zero"),
                         ("generated, not trained", "untrained")]:
            c, _ = ANATOMY[seg]
            top.bar(i - w / 2 - 0.01, r[col], w, bottom=base, color=c, label=seg if i == 0 else None)
            base += r[col]
        if r["reused_rollouts"] > 0:
            top.bar(i - w / 2 - 0.01, r["reused_rollouts"], w, bottom=base, color="white",
                    edgecolor=ANATOMY["trained, informative"][0], hatch="xxx", lw=0.6,
                    label="trained, reused (free)" if "trained, reused (free)" not in
                    top.get_legend_handles_labels()[1] else None)
        base = 0.0
        for seg, col in [("pilot (screening)", "pilot_rollouts"), ("main / commit", "main")]:
            c, hatch = ANATOMY[seg]
            top.bar(i + w / 2 + 0.01, r[col], w, bottom=base, color=c, label=seg if i == 0 else None)
            base += r[col]
        top.text(i, r["step_rollouts"] + max(r["reused_rollouts"], 0), f"{r['step_rollouts']:,.0f}",
                 ha="center", va="bottom", fontsize=6.5)
    top.set_xticks(range(len(names)), [f"{n}\nuse | kind" for n in names])
    top.tick_params(axis="x", labelsize=7)
    top.set_ylabel("rollouts per step\n(mean)")
    top.yaxis.set_major_formatter(EngFormatter(sep=""))
    top.set_ylim(0, (a["step_rollouts"] + a["reused_rollouts"]).max() * 1.55)
    top.legend(loc="upper left", ncols=2, fontsize=6.5, columnspacing=0.8, handlelength=1.2)
    top.set_title(_label(table))
    err = np.array([a["rounds"] - a["rounds_low"], a["rounds_high"] - a["rounds"]]).clip(min=0)
    bottom.bar(range(len(names)), a["rounds"], 0.5, color=[color(n) for n in names],
               yerr=err, capsize=2, error_kw={"lw": 0.9})
    for i, v in enumerate(a["rounds"]):
        bottom.text(i + 0.28, v, f"{v:.2f}", va="bottom", ha="left", fontsize=6.5)
    bottom.set_xticks(range(len(names)), names)
    bottom.tick_params(axis="x", labelsize=7)
    bottom.set_ylabel("generation\nrounds / step")
    bottom.set_ylim(0, a["rounds_high"].fillna(a["rounds"]).max() * 1.3)
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
    for ref in [r for r in references if r in set(others["strategy"])]:
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
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set(xlabel=param.replace("_", " "), ylabel="rollouts to target",
           title=_label(table, f", target {target:.3f}"))
    _legend(ax, loc="lower right", ncols=3)
    return fig


def trials_vs_param(trials: pd.DataFrame, param: str = "pilot_fraction",
                    title: str | None = None) -> plt.Figure:
    """An Optuna trials table (``study.trials_dataframe()``: params_<name>, value, state):
    each completed trial's objective value against ``param``. Lines: none (one scatter)."""
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
    ax.scatter(t[col], t["value"], s=14, color=color("pilot_commit"), alpha=0.8, lw=0)
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
    from allocbench.metrics import default_target

    theme()
    envs = set(table["env"])
    if not {"sim", "real"} <= envs:
        raise NoData("sim-vs-real ranking: needs both env=sim and env=real rows")
    parts = {e: table[table["env"] == e] for e in ("sim", "real")}
    for e, p in parts.items():
        if p["scenario"].nunique() > 1:
            raise ValueError(f"sim-vs-real ranking: several {e} scenarios; select one of each")
    targets = dict(targets or {})
    for e, p in parts.items():
        if e not in targets:
            try:
                targets[e] = default_target(p)
            except ValueError as err:
                raise NoData(f"sim-vs-real ranking: {err}") from None
    if agreement is None:
        try:
            agreement = stats.rank_agreement(parts["sim"], parts["real"], targets["sim"], targets["real"],
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
