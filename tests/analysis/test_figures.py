import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from analysis import figures as F
from tests.analysis.conftest import make_table


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_accuracy_vs_rollouts_keeps_compare_signature(table):
    fig = F.accuracy_vs_rollouts(table, 0.7)  # as `allocbench compare` calls it
    ax = fig.axes[0]
    assert isinstance(fig, plt.Figure)
    assert len(ax.lines) == 3 + 1  # three strategies and the target
    assert [line.get_label() for line in ax.lines[:3]] == ["grpo", "dapo", "fast"]
    assert len(ax.collections) == 3  # one confidence band each
    assert ax.get_xlabel() == "cumulative rollouts"
    assert len(F.accuracy_vs_rollouts(table).axes[0].lines) == 3  # no target: no dashed line


def test_accuracy_band_is_a_t_interval():
    table = make_table(strategies=("grpo",), seed_shift=0.01)  # seeds 0.00 / 0.01 / 0.02 above
    ax = F.accuracy_vs_rollouts(table).axes[0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    half = 4.302653 * 0.01 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 0.01
    assert band.max() == pytest.approx(0.9 + 0.01 + half, abs=1e-5)
    assert band.min() == pytest.approx(0.5 + 0.01 - half, abs=1e-5)


def test_accuracy_vs_tokens(table):
    ax = F.accuracy_vs_tokens(table, 0.7).axes[0]
    assert len(ax.lines) == 4 and ax.get_xlabel() == "cumulative generated tokens"
    assert ax.lines[0].get_xdata().max() == 8 * 100 * 100


def test_speedup_bars(table):
    fig = F.speedup_bars(table, 0.7, n_boot=100)
    assert [ax.get_title() for ax in fig.axes] == ["vs grpo", "vs dapo"]
    widths = {ax.get_title(): sorted(round(b.get_width(), 4) for c in ax.containers
                                     if isinstance(c, BarContainer) for b in c) for ax in fig.axes}
    # vs grpo: dapo 400/2400, fast 400/300; vs dapo: grpo 2400/400, fast 2400/300
    assert widths == {"vs grpo": [round(1 / 6, 4), round(4 / 3, 4)], "vs dapo": [6.0, 8.0]}
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["grpo", "dapo", "fast"]


def test_speedup_bars_mark_unreached(table):
    fig = F.speedup_bars(table, 0.99, n_boot=50)
    assert sum(t.get_text() == "not reached" for ax in fig.axes for t in ax.texts) == 4


def test_speedup_bars_without_references():
    with pytest.raises(F.NoData, match="references"):
        F.speedup_bars(make_table(strategies=("fast",)), 0.7)


def test_signal_vs_variance(table):
    fig = F.signal_vs_variance(table, bins=4)
    ax = fig.axes[0]
    assert len(ax.lines) == 1  # the binned median
    assert len([c for c in ax.collections if c.get_label() in {"grpo", "dapo", "fast"}]) == 3
    ys = ax.lines[0].get_ydata()
    assert np.all(np.diff(ys[np.isfinite(ys)]) > 0)  # signal = sqrt(variance) in the hand table


def test_signal_vs_variance_without_signal(table):
    with pytest.raises(F.NoData, match="no learn_signal column"):
        F.signal_vs_variance(table.drop(columns=["learn_signal"]).assign(learn_loss=1.0))


def test_prompt_shares(table):
    fig = F.prompt_shares(table)
    assert len(fig.axes) == 3
    assert [len(ax.lines) for ax in fig.axes] == [3, 3, 3]
    zero = {line.get_label(): line.get_ydata() for line in fig.axes[2].lines}
    assert zero["grpo"] == pytest.approx(0.2) and zero["fast"] == pytest.approx(0.0)


def test_prompt_shares_without_eval_shares(table):
    fig = F.prompt_shares(table.assign(eval_solved_share=np.nan))  # only the zero-variance panel
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 3
    with pytest.raises(F.NoData, match="no eval_solved_share"):
        F.prompt_shares(table.assign(eval_solved_share=np.nan, prompts_trained=0))


def test_anatomy_by_hand(table):
    a = F.anatomy_table(table)
    # grpo: 100 generated, all trained, 2 of 10 groups of 10 zero-variance
    assert a.loc["grpo", ["informative", "zero", "untrained", "pilot_rollouts", "main"]].tolist() == [80, 20, 0, 0, 100]
    # fast: 150 generated, 50 of them pilots, 100 trained -> 50 not trained
    assert a.loc["fast", ["informative", "zero", "untrained", "pilot_rollouts", "main"]].tolist() == [100, 0, 50, 50, 100]
    assert a.loc["dapo", "untrained"] == 200
    assert a.loc["fast", "rounds"] == pytest.approx(1.5)  # 2 rounds on odd steps, 1 on even


def test_budget_anatomy(table):
    fig = F.budget_anatomy(table)
    left, right = fig.axes
    assert len(left.patches) == 3 * (3 + 2)  # per strategy: 3 segments by use, 2 by kind
    assert len(right.patches) == 3
    assert [round(p.get_width(), 3) for p in right.patches] == [1.0, 1.0, 1.5]
    reused = table.assign(reused_rollouts=np.where(table["step"] > 0, 10, 0))
    assert len(F.budget_anatomy(reused).axes[0].patches) == 3 * (3 + 2 + 1)  # the reused cap


def test_pilot_fraction_ablation():
    arms = [make_table(strategies=("fast",), hp={"fast": {"pilot_fraction": f}}) for f in (0.1, 0.25, 0.5)]
    arms[2]["eval_acc"] -= 0.1  # the 0.5 arm is slower: reaches 0.7 only at step 4
    table = pd.concat([*arms, make_table(strategies=("grpo", "dapo"))], ignore_index=True)
    fig = F.pilot_fraction_ablation(table, 0.7, n_boot=50)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    x, y = bars[0].lines[0].get_data()
    assert list(x) == [0.1, 0.25, 0.5] and list(y) == [300, 300, 600]
    refs = [line for line in ax.lines if line.get_label() in {"grpo", "dapo"}]
    assert len(refs) == 2 and refs[0].get_ydata()[0] == 400


def test_pilot_fraction_ablation_spans_values_that_never_reach_the_target():
    arms = [make_table(strategies=("fast",), hp={"fast": {"pilot_fraction": f}}) for f in (0.25, 0.58)]
    for arm in arms:
        arm["eval_acc"] -= 0.5  # neither arm reaches 0.7: only "not reached" marks, no points
    table = pd.concat([*arms, make_table(strategies=("grpo",))], ignore_index=True)
    lo, hi = F.pilot_fraction_ablation(table, 0.7, n_boot=50).axes[0].get_xlim()
    assert lo < 0.25 and hi > 0.58 and hi - lo < 1  # the marks sit inside the axis, not far outside


def test_pilot_fraction_ablation_needs_two_values(table):
    with pytest.raises(F.NoData, match="fewer than two values"):
        F.pilot_fraction_ablation(make_table(hp={"fast": {"pilot_fraction": 0.25}}), 0.7)
    with pytest.raises(F.NoData, match="no hp_pilot_fraction"):
        F.pilot_fraction_ablation(table, 0.7)


def test_trials_vs_param():
    trials = pd.DataFrame({"number": range(5), "state": ["COMPLETE"] * 4 + ["PRUNED"],
                           "value": [100.0, 120.0, 90.0, 400.0, np.nan],
                           "params_pilot_fraction": [0.1, 0.2, 0.3, 0.5, 0.6],
                           "user_attrs_seeds_reached": [3, 3, 3, 1, np.nan]})
    ax = F.trials_vs_param(trials).axes[0]
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes == [3, 1]  # reached on every seed / missed on one
    with pytest.raises(F.NoData):
        F.trials_vs_param(trials.drop(columns=["params_pilot_fraction"]))


def test_sim_vs_real_ranks():
    both = pd.concat([make_table(), make_table(env="real", scenario="gsm8k")], ignore_index=True)
    fig = F.sim_vs_real_ranks(both, {"sim": 0.7, "real": 0.7}, n_boot=50)
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and len(ax.collections) == 3  # the diagonal, a dot per strategy
    assert "τ = 1.00" in ax.get_title()
    with pytest.raises(F.NoData, match="both env=sim and env=real"):
        F.sim_vs_real_ranks(make_table())


def test_colours_are_fixed_per_strategy():
    from allocbench.strategy import strategy_names

    assert F.color("grpo") == F.color("grpo") and F.color("grpo") != F.color("dapo")
    registered = strategy_names()
    assert len({F.color(n) for n in registered}) == len(registered)  # distinct while <= 20
    assert F.order(["zeta", "pilot_commit", "alpha", "grpo"]) == ["grpo", "pilot_commit", "alpha", "zeta"]
