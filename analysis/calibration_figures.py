"""The calibration figure: real runs against the fitted simulator (``allocbench calibrate``).

``calibration_figure(acc, zero_var, pass_hist)`` draws the three summaries the discrepancy
compares (``sim.calibrate``), each a tidy table with a ``source`` column (``real`` / ``sim``)
and a ``strategy`` column: the held-out accuracy gain against cumulative rollouts, the
zero-variance share of the trained groups against the step, and the histogram of per-group
pass rates in each third of training. Real is drawn solid with its standard-error band,
the simulator dashed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.figures import COL, NoData, _budget_axis, color, order, theme  # noqa: E402

STYLE = {"real": dict(ls="-", alpha=1.0), "sim": dict(ls="--", alpha=0.9)}
THIRD_NAMES = ("first third", "middle third", "last third")


def _need(table: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise NoData(f"calibration figure, {what}: no {', '.join(missing)} column")


def calibration_figure(acc: pd.DataFrame, zero_var: pd.DataFrame, pass_hist: pd.DataFrame,
                       title: str | None = None, spread: pd.DataFrame | None = None) -> plt.Figure:
    """Real vs simulated: accuracy gain vs cumulative rollouts, zero-variance share vs step,
    pass-rate histograms per third of training (one colour per strategy); with ``spread`` also
    the std over seeds of the accuracy gain vs cumulative rollouts (log scale)."""
    theme()
    _need(acc, ["source", "strategy", "cum_rollouts", "gain", "se"], "accuracy")
    _need(zero_var, ["source", "strategy", "step", "share", "se"], "zero-variance share")
    _need(pass_hist, ["source", "strategy", "third", "center", "share", "se"], "pass-rate histograms")
    if spread is not None:
        _need(spread, ["source", "strategy", "cum_rollouts", "std"], "seed spread")
    strategies = order(pd.concat([acc["strategy"], zero_var["strategy"], pass_hist["strategy"]]))
    if not strategies:
        raise NoData("calibration figure: the tables are empty")
    fig = plt.figure(figsize=(2 * COL, 4.4), layout="constrained")
    grid = fig.add_gridspec(2, 6)
    if spread is None:
        ax_acc, ax_zv = fig.add_subplot(grid[0, :3]), fig.add_subplot(grid[0, 3:])
    else:
        ax_acc, ax_zv, ax_spread = (fig.add_subplot(grid[0, 2 * i:2 * i + 2]) for i in range(3))
    ax_hist = [fig.add_subplot(grid[1, 2 * i:2 * i + 2]) for i in range(3)]

    for strategy in strategies:
        c = color(strategy)
        for source in ("real", "sim"):
            a = acc[(acc["strategy"] == strategy) & (acc["source"] == source)].sort_values("cum_rollouts")
            if len(a):
                ax_acc.plot(a["cum_rollouts"], a["gain"], color=c, label=f"{strategy} ({source})", **STYLE[source])
                if source == "real":
                    ax_acc.fill_between(a["cum_rollouts"], a["gain"] - a["se"].fillna(0), a["gain"] + a["se"].fillna(0),
                                        color=c, alpha=0.18, lw=0)
            if spread is not None:
                d = spread[(spread["strategy"] == strategy) & (spread["source"] == source)].sort_values("cum_rollouts")
                if len(d):
                    ax_spread.plot(d["cum_rollouts"], d["std"], color=c, **STYLE[source])
            z = zero_var[(zero_var["strategy"] == strategy) & (zero_var["source"] == source)].sort_values("step")
            if len(z):
                ax_zv.plot(z["step"], z["share"], color=c, **STYLE[source])
                if source == "real":
                    ax_zv.fill_between(z["step"], z["share"] - z["se"].fillna(0), z["share"] + z["se"].fillna(0),
                                       color=c, alpha=0.18, lw=0)
            for third, ax in enumerate(ax_hist):
                h = pass_hist[(pass_hist["strategy"] == strategy) & (pass_hist["source"] == source)
                              & (pass_hist["third"] == third)].sort_values("center")
                if not len(h):
                    continue
                if source == "real":
                    width = float(np.diff(h["center"]).min()) * 0.8 if len(h) > 1 else 0.1
                    ax.bar(h["center"], h["share"], width=width, color=c, alpha=0.35, yerr=h["se"].fillna(0),
                           error_kw=dict(lw=0.6, capsize=0))
                else:
                    ax.plot(h["center"], h["share"], color=c, marker="o", ms=2.5, **STYLE[source])
    _budget_axis(ax_acc, "cum_rollouts")
    ax_acc.set_ylabel("held-out accuracy gain")
    ax_acc.axhline(0, color="0.6", lw=0.5)
    ax_acc.legend(fontsize=6.5, handlelength=1.6)
    ax_zv.set_xlabel("training step")
    ax_zv.set_ylabel("zero-variance share")
    ax_zv.set_ylim(bottom=0)
    if spread is not None:
        _budget_axis(ax_spread, "cum_rollouts")
        ax_spread.set_yscale("log")
        ax_spread.set_ylabel("std over seeds of the gain")
    for third, ax in enumerate(ax_hist):
        ax.set_title(THIRD_NAMES[third], fontsize=7.5)
        ax.set_xlabel("group pass rate (correct / n)")
        ax.set_xlim(-0.08, 1.08)
    ax_hist[0].set_ylabel("share of trained groups")
    ax_hist[-1].legend(handles=[Patch(color="0.6", alpha=0.5, label="real"),
                                Line2D([], [], color="0.3", ls="--", marker="o", ms=2.5, label="sim")],
                       fontsize=6, handlelength=1.6)
    if title:
        fig.suptitle(title, fontsize=8)
    return fig
