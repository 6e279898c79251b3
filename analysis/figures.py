"""Figures: each a function from a tidy results table to a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a screen
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from allocbench.metrics import mean_curve  # noqa: E402


def theme() -> None:
    """One theme for every figure, readable at a paper's column width."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def accuracy_vs_rollouts(table: pd.DataFrame, target: float | None = None,
                         x: str = "cum_rollouts") -> plt.Figure:
    """Held-out accuracy against cumulative rollouts (or ``x="cum_tokens"``): the seed mean per
    strategy with a band of +-1 std over seeds, and the target as a dashed line."""
    theme()
    curves = mean_curve(table)
    fig, ax = plt.subplots(figsize=(6.0, 3.8), layout="constrained")
    palette = dict(zip(curves["strategy"].unique(), sns.color_palette("colorblind")))
    for name, c in curves.groupby("strategy", sort=False):
        ax.plot(c[x], c["eval_acc"], label=name, color=palette[name], lw=1.8)
        spread = c["eval_acc_std"].fillna(0)
        ax.fill_between(c[x], c["eval_acc"] - spread, c["eval_acc"] + spread,
                        color=palette[name], alpha=0.2, lw=0)
    if target is not None:
        ax.axhline(target, ls="--", color="0.3", lw=1, label=f"target {target:.3f}")
    scenario = ", ".join(table["scenario"].unique())
    seeds = table["seed"].nunique()
    ax.set(xlabel="cumulative rollouts" if x == "cum_rollouts" else "cumulative generated tokens",
           ylabel="held-out accuracy", title=f"{scenario} ({seeds} seeds, mean ± std)")
    ax.legend(frameon=False)
    return fig
