"""The agreement figure and table of results/trl (or another folder): the same strategies on tiny-arith trained by
allocbench's own loop (own/, ``allocbench compare --env real``) and inside TRL's GRPOTrainer
through the plug-in (plugin/, ``python -m real.trl``).

Writes accuracy_vs_rollouts.png (held-out accuracy against cumulative rollouts, seed mean with
its 95% band: solid lines the own loop, dashed TRL, one colour per strategy) and agreement.csv,
one row per strategy and host: the seed-mean curve's peak and its accuracy at two budgets
(the last evaluation within 12.8k and 25.6k rollouts: grpo's steps 100 and 200), the final
accuracy over seeds, and rollouts to a common target with the speed-up over grpo on the same
host. The target is the lowest of the four seed-mean peaks, rounded down to 0.01: a level every
curve reaches, so each host's speed-up is defined.

Run: python -m analysis.trl_agreement [FOLDER]   (default results/trl)
"""

import math
import sys
from pathlib import Path

import pandas as pd

from allocbench.metrics import mean_curve, speedup_table
from allocbench.schema import read_table, write_atomic
from analysis.figures import accuracy_vs_rollouts, color

HOSTS = {"own loop": "own", "TRL": "plugin"}  # label -> folder
BUDGETS = (12_800, 25_600)


def summary(table: pd.DataFrame, target: float, host: str) -> pd.DataFrame:
    curves = mean_curve(table)
    rows = []
    for s in speedup_table(table, target).itertuples():
        curve = curves[curves["strategy"] == s.strategy]
        at = {f"acc_at_{b // 100 / 10:g}k": curve.loc[curve["cum_rollouts"] <= b, "eval_acc"].iloc[-1]
              for b in BUDGETS}
        rows.append({"strategy": s.strategy, "host": host, "seeds": s.seeds, "peak_acc": curve["eval_acc"].max(),
                     **at, "final_acc": s.final_acc, "final_acc_std": s.final_acc_std,
                     "runs_stopped": s.runs_stopped, "target": target, "rollouts_to_target": s.rollouts_to_target,
                     "seeds_reached": s.seeds_reached, "speedup_vs_grpo": s.speedup_vs_grpo,
                     "rounds_per_step": s.rounds_per_step})
    return pd.DataFrame(rows)


def main(here: Path) -> None:
    tables = {label: read_table(here / folder / "runs.parquet") for label, folder in HOSTS.items()}
    peaks = [mean_curve(t).groupby("strategy")["eval_acc"].max().min() for t in tables.values()]
    target = math.floor(min(peaks) * 100) / 100
    agreement = pd.concat([summary(t, target, label) for label, t in tables.items()], ignore_index=True)
    agreement = agreement.sort_values(["strategy", "host"], kind="stable")
    write_atomic(here / "agreement.csv", lambda tmp: agreement.to_csv(tmp, index=False, float_format="%.4g"))
    print(agreement.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))

    # one table, each run's strategy named with its host, so one call draws all four curves
    both = pd.concat([t.assign(strategy=t["strategy"] + f" ({label})") for label, t in tables.items()],
                     ignore_index=True)
    fig = accuracy_vs_rollouts(both, target)
    ax = fig.axes[0]
    # the figure colours each name apart; here a strategy keeps its colour and the host is the line style
    for line, band in zip(ax.get_lines(), ax.collections):
        name, _, host = line.get_label().partition(" (")
        line.set_color(color(name))
        band.set_color(color(name))
        line.set_linestyle("--" if host.startswith("TRL") else "-")
    # where pilot_commit runs stopped early (a batch it could not fill) one or two seeds remain and
    # the t-band widens past any accuracy; the axis keeps to what accuracies can be
    ax.set_ylim(0.1, 0.45)
    ax.legend(loc="lower right")
    ax.set_title("tiny-arith: own loop (solid), TRL plug-in (dashed)")
    write_atomic(here / "accuracy_vs_rollouts.png", lambda tmp: fig.savefig(tmp, format="png", dpi=300))
    print(f"wrote {here / 'agreement.csv'} and {here / 'accuracy_vs_rollouts.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/trl"))
