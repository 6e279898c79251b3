import math

import matplotlib.pyplot as plt
from matplotlib.collections import PathCollection
import numpy as np
import pandas as pd
import pytest

from allocbench.errors import ConfigError
from analysis.figures import replicate_taus, sim_vs_real_differences, sim_vs_real_speedups
from analysis.validate import (AGREEMENT_COLUMNS, COLUMNS, PAIRED_COLUMNS, agreement_table, paired,
                               paired_differences, paired_line, render, replicate_line, replicates, spread_line,
                               validate)
from tests.analysis.conftest import make_table

# Strategies built from conftest's three: each name takes the rollouts per step of a base
# (grpo 100, dapo 300, fast 150) and its own accuracy at eval steps 0, 2, 4, 6, 8.
# sim: target = grpo's peak 0.9; rollouts to it: a 200 (step 2), b 300 (fast, step 2),
# c 400 (step 4), grpo 800 (step 8) -> speed-ups 4, 8/3, 2, 1; ranks a1 b2 c3 grpo4.
SIM = {"grpo": ("grpo", [0.5, 0.6, 0.7, 0.8, 0.9]),
       "a": ("grpo", [0.5, 0.9, 0.9, 0.9, 0.9]),
       "b": ("fast", [0.5, 0.9, 0.9, 0.9, 0.9]),
       "c": ("grpo", [0.5, 0.6, 0.9, 0.9, 0.9])}
# real: target = grpo's peak 0.6 (step 6, 600); a 200 (step 2), c 300 (fast, step 2),
# b 400 (step 4) -> speed-ups a 3, c 2, b 1.5; ranks a1 c2 b3 grpo4: only (b, c) discordant
REAL = {"grpo": ("grpo", [0.3, 0.4, 0.5, 0.6, 0.6]),
        "a": ("grpo", [0.3, 0.6, 0.6, 0.6, 0.6]),
        "b": ("grpo", [0.3, 0.4, 0.6, 0.6, 0.6]),
        "c": ("fast", [0.3, 0.6, 0.6, 0.6, 0.6])}
# real, reversed: grpo 200 (its peak 0.9 at step 2), c 400, b 600, a 800
REVERSED = {"grpo": ("grpo", [0.5, 0.9, 0.9, 0.9, 0.9]),
            "c": ("grpo", [0.5, 0.6, 0.9, 0.9, 0.9]),
            "b": ("grpo", [0.5, 0.6, 0.7, 0.9, 0.9]),
            "a": ("grpo", [0.5, 0.6, 0.7, 0.8, 0.9])}
# as SIM, but a, b, c keep rising after they reach 0.9
RISING = {"grpo": SIM["grpo"], "a": ("grpo", [0.5, 0.9, 0.95, 0.95, 0.95]),
          "b": ("fast", [0.5, 0.9, 0.95, 0.95, 0.95]), "c": ("grpo", [0.5, 0.6, 0.9, 0.95, 0.95])}


def build(spec: dict, env: str = "sim", scenario: str = "hand", seed_shift: float = 0.0,
          seeds=(0, 1, 2)) -> pd.DataFrame:
    parts = [make_table(strategies=(base,), acc={base: acc}, env=env, scenario=scenario,
                        seed_shift=seed_shift, seeds=seeds).assign(strategy=name)
             for name, (base, acc) in spec.items()]
    return pd.concat(parts, ignore_index=True)


def rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("strategy")


def test_one_discordant_pair_by_hand():
    table, agree = validate(build(SIM), build(REAL, "real", "hand-real"), n_boot=200)
    assert list(table.columns) == COLUMNS and set(agree) == set(AGREEMENT_COLUMNS)
    assert agree["tau"] == pytest.approx(4 / 6)  # 5 concordant, 1 discordant of 6 pairs
    # every seed is the same: every redraw gives the same curves, the interval is the point
    assert agree["low"] == pytest.approx(4 / 6) and agree["high"] == pytest.approx(4 / 6)
    # and a simulator ranking as the real point estimate would get tau 1 in every redraw
    assert agree["ceiling_low"] == agree["ceiling_high"] == pytest.approx(1.0)
    assert agree["valid"] == 1.0 and agree["n_strategies"] == 4
    assert agree["sim_target"] == pytest.approx(0.9) and agree["real_target"] == pytest.approx(0.6)
    assert (agree["sim_scenario"], agree["real_scenario"]) == ("hand", "hand-real")
    r = rows(table)
    assert r["sim_rollouts"].to_dict() == pytest.approx({"a": 200, "b": 300, "c": 400, "grpo": 800})
    assert r["real_rollouts"].to_dict() == pytest.approx({"a": 200, "b": 400, "c": 300, "grpo": 600})
    assert r["sim_speedup"].to_dict() == pytest.approx({"a": 4.0, "b": 8 / 3, "c": 2.0, "grpo": 1.0})
    assert r["real_speedup"].to_dict() == pytest.approx({"a": 3.0, "b": 1.5, "c": 2.0, "grpo": 1.0})
    for side in ("sim", "real"):
        assert r[f"{side}_low"].to_numpy() == pytest.approx(r[f"{side}_speedup"].to_numpy())
        assert r[f"{side}_high"].to_numpy() == pytest.approx(r[f"{side}_speedup"].to_numpy())
        assert (r[f"{side}_seeds_reached"] == 3).all() and (r[f"{side}_seeds"] == 3).all()
    assert r["sim_rank"].to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0, "grpo": 4.0}
    assert r["real_rank"].to_dict() == {"a": 1.0, "c": 2.0, "b": 3.0, "grpo": 4.0}
    assert table["strategy"].tolist() == ["a", "c", "b", "grpo"]  # ordered by real rank
    assert math.isnan(r.loc["grpo", "sim_valid"]) and r.loc["a", "sim_valid"] == 1.0


def test_identical_ranking_tau_one_with_a_sensible_interval():
    table, agree = validate(build(SIM), build(SIM, "real"), n_boot=200)
    assert agree["tau"] == pytest.approx(1.0) and agree["low"] == agree["high"] == pytest.approx(1.0)
    # seeds that differ (real accuracy + 0.00, 0.02, 0.04 by seed; grpo's seed-mean peak 0.92).
    # The default target is grpo's peak in every draw too: a draw's grpo reaches its own peak
    # at step 8, a, b and c theirs earlier, so every draw ranks as the full sample does
    noisy, agree = validate(build(RISING), build(RISING, "real", seed_shift=0.02), n_boot=300, seed=1)
    assert agree["tau"] == pytest.approx(1.0) and agree["real_target"] == pytest.approx(0.92)
    assert agree["low"] == agree["high"] == pytest.approx(1.0) and agree["valid"] == 1.0
    r = rows(noisy)
    assert (r["sim_rank"] == r["real_rank"]).all() and (r["real_valid"].drop("grpo") == 1.0).all()
    assert r["real_rollouts"].to_dict() == pytest.approx({"a": 200, "b": 300, "c": 400, "grpo": 800})
    # grpo's seeds peak at 0.90, 0.92, 0.94: two reach 0.92; a's rise to 0.95 +: all three
    assert r.loc["grpo", "real_seeds_reached"] == 2 and r.loc["a", "real_seeds_reached"] == 3
    # the same target given as a number stays fixed in every draw: in redraws whose seed mean is
    # lower grpo misses it (ranked last) and a, b, c reach it later (b and c then tie at 600), so
    # the interval reaches below 1
    fixed, agree = validate(build(RISING), build(RISING, "real", seed_shift=0.02), real_target=0.92,
                            n_boot=300, seed=1)
    assert agree["tau"] == pytest.approx(1.0) and -1.0 <= agree["low"] < agree["high"] == pytest.approx(1.0)
    r = rows(fixed)
    for name in ("a", "b", "c"):
        assert r.loc[name, "real_low"] <= r.loc[name, "real_speedup"] <= r.loc[name, "real_high"]
        assert 0 < r.loc[name, "real_valid"] < 1  # draws where grpo misses have no speed-up
    # the simulated side has no seed noise and ranks exactly as the real point estimate: it is
    # the ceiling's perfect simulator, so its interval is the ceiling, draw for draw
    assert (agree["ceiling_low"], agree["ceiling_high"]) == pytest.approx((agree["low"], agree["high"]))


def test_reversed_ranking_tau_minus_one():
    table, agree = validate(build(SIM), build(REVERSED, "real"), n_boot=100)
    assert agree["tau"] == pytest.approx(-1.0) and agree["high"] == pytest.approx(-1.0)
    r = rows(table)
    assert r["real_speedup"].to_dict() == pytest.approx({"grpo": 1.0, "c": 0.5, "b": 1 / 3, "a": 0.25})
    assert r["real_rank"].to_dict() == {"grpo": 1.0, "c": 2.0, "b": 3.0, "a": 4.0}


def test_targets_override_and_not_reached_ranks_last():
    sim = build({**SIM, "slow": ("dapo", [0.5, 0.5, 0.5, 0.5, 0.5])})
    real = build({**REAL, "slow": ("dapo", [0.3, 0.3, 0.3, 0.3, 0.3]), "real_only": ("grpo", REAL["a"][1])}, "real")
    table, agree = validate(sim, real, sim_target=0.7, n_boot=100)
    assert agree["sim_target"] == 0.7 and agree["real_target"] == pytest.approx(0.6)
    assert agree["strategies"] == ["grpo", "a", "b", "c", "slow"]  # the common ones, sim's order
    r = rows(table)
    # at 0.7 in sim: a step 2 (200), b step 2 (300), grpo and c step 4 (400), slow never
    assert r["sim_speedup"].to_dict() == pytest.approx({"grpo": 1.0, "a": 2.0, "b": 4 / 3, "c": 1.0, "slow": np.nan},
                                                       nan_ok=True)
    assert r["sim_rank"].to_dict() == {"a": 1.0, "b": 2.0, "c": 3.5, "grpo": 3.5, "slow": 5.0}  # ties share
    assert r.loc["slow", "sim_rank"] == r.loc["slow", "real_rank"] == 5.0
    assert r.loc["slow", "sim_seeds_reached"] == 0 and np.isnan(r.loc["slow", "real_low"])
    text = render(table, agree)
    assert "not reached" in text and text.splitlines()[-1].startswith("Kendall tau = ")


def test_render_and_agreement_table():
    table, agree = validate(build(SIM), build(REAL, "real"), n_boot=50)
    text = render(table, agree)
    assert text.splitlines()[-1] == ("Kendall tau = 0.67 [0.67, 0.67] over 4 strategies; a simulator ranking "
                                     "exactly as the real point estimate would get [1.00, 1.00] at these real seeds")
    line = next(s for s in text.splitlines() if s.startswith("b "))
    assert line.split() == ["b", "2.67x", "[2.67,", "2.67]", "1.50x", "[1.50,", "1.50]", "2", "3", "3/3", "3/3"]
    one = agreement_table(agree)
    assert list(one.columns) == AGREEMENT_COLUMNS and len(one) == 1
    assert one.loc[0, "strategies"] == "grpo a b c" and one.loc[0, "n_boot"] == 50


@pytest.mark.parametrize("sim, real, kwargs, message", [
    (build(SIM), build({k: v for k, v in REAL.items() if k != "grpo"}, "real"), {},
     "reference strategy 'grpo' is not in the real table"),
    (build(SIM), build(REAL, "real"), {"reference": "nope"}, "reference strategy 'nope' is not in the sim table"),
    (build(SIM), build({"grpo": REAL["grpo"], "x": REAL["a"]}, "real"), {}, "1 strategy in both tables"),
    (pd.concat([build(SIM), build(SIM, scenario="other")]), build(REAL, "real"), {}, "several scenarios"),
])
def test_bad_input_raises_config_error(sim, real, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        validate(sim, real, n_boot=20, **kwargs)


def test_figure_two_panels_log_log_and_not_reached():
    sim = build({**SIM, "slow": ("dapo", [0.5, 0.5, 0.5, 0.5, 0.5])})
    real = build({**REAL, "slow": ("dapo", [0.3, 0.3, 0.3, 0.3, 0.3])}, "real")
    table, agree = validate(sim, real, n_boot=50)
    fig = sim_vs_real_speedups(table, agree)
    try:
        left, right = fig.axes
        assert left.get_xscale() == left.get_yscale() == "log"
        assert "τ = " in right.get_title() and f"{agree['tau']:.2f}" in right.get_title()
        texts = [t.get_text() for t in left.texts]
        assert "not reached" in texts and "a" in texts and "slow" in texts
        lo, hi = left.get_xlim()
        assert lo < 1.5 < 4.0 < hi  # every finite speed-up is inside the axes
        assert {t.get_text() for t in right.texts} == {"grpo", "a", "b", "c", "slow"}
    finally:
        plt.close(fig)


def test_replicates_over_the_common_strategies_and_their_figure():
    sim, real = build(SIM), build(REAL, "real", "hand-real", seeds=(0, 1, 2, 3, 4))
    _, agree = validate(sim, real, n_boot=20)
    out = replicates(sim.assign(strategy=sim["strategy"].replace("c", "only_sim")), real, n_splits=30)
    # c is not on both sides: three strategies, ranked alike by every seed of each side
    assert out["seeds_per_side"].tolist() == [1, 2] and (out["real_tau"] == 1.0).all()
    assert out["sim_tau"].tolist() == pytest.approx([1.0, 1.0])
    assert "at 2 seeds a side (30 random splits" in replicate_line(out)
    fig = replicate_taus(out, agree)
    assert fig.axes[0].get_xlabel() == "seeds a side" and len(fig.axes[0].lines) == 3  # two sides and tau = 0
    plt.close(fig)
    # one real seed: an empty table, a figure that says why
    single = replicates(sim, real[real["seed"] == 0], n_splits=30)
    assert single.empty and "too few seeds" in replicate_line(single)
    fig = replicate_taus(single, agree)
    assert "nothing to split" in fig.axes[0].texts[0].get_text()
    plt.close(fig)
    with pytest.raises(ConfigError, match="number of splits must be a positive integer"):
        replicates(sim, real, n_splits=0)
    with pytest.raises(ConfigError, match="reference strategy 'nope'"):
        replicates(sim, real, reference="nope")


def test_spread_line_compares_how_far_the_seeds_drift_apart():
    sim = build(SIM)  # every seed alike: no spread
    real = build(REAL, "real", "hand-real")
    real.loc[(real["seed"] == 1) & (real["step"] > 0), "eval_acc"] += 0.03  # seed 1 gains 0.03 more
    line = spread_line(sim, real)
    # grpo's gains differ by 0.03 between seeds 0-2 at each evaluation: std 0.0173
    assert line == ("seed spread of grpo's accuracy gain (std over seeds, mean over the evaluations): "
                    "simulated 0.0000, real 0.0173 (0.00x)")


def shifted(table: pd.DataFrame, name: str, by_seed: dict) -> pd.DataFrame:
    """grpo's runs of ``table`` renamed ``name``, each seed's accuracy moved by ``by_seed[seed]``."""
    runs = table[table["strategy"] == "grpo"].assign(strategy=name)
    return runs.assign(eval_acc=runs["eval_acc"] + runs["seed"].map(by_seed))


def test_paired_differences_at_equal_rollouts_by_hand():
    # grpo evaluates at 0, 200, 400, 600, 800 rollouts (0.5 ... 0.9): the window is 400, 600, 800
    base = build({"grpo": SIM["grpo"], "a": SIM["a"],
                  "interp": ("fast", [0.5, 0.6, 0.9, 0.9, 0.9])})
    short = base[(base["strategy"] == "grpo") & (base["step"] <= 2)].assign(strategy="short")
    table = pd.concat([base, shifted(base, "same", {0: 0.0, 1: 0.0, 2: 0.0}),
                       shifted(base, "worse", {0: -0.09, 1: -0.11, 2: -0.10}),
                       shifted(base, "noisy", {0: 0.05, 1: -0.05, 2: 0.01}), short], ignore_index=True)
    d = paired_differences(table).set_index("strategy")
    assert list(d.index) == ["a", "interp", "same", "worse", "noisy", "short"]
    # a, grpo-priced: 0.9 - (0.7, 0.8, 0.9) = 0.2, 0.1, 0 at every seed
    assert d.loc["a", "diff"] == pytest.approx(0.1) and d.loc["a", "verdict"] == "better"
    # interp spends 150 a step (0, 300, 600, ...): at 400 it is 0.6 + 0.3 / 3 = 0.7, as grpo;
    # at 600 0.9 - 0.8, at 800 0.9 - 0.9
    assert d.loc["interp", "diff"] == pytest.approx(0.1 / 3)
    assert (d.loc["same", "diff"], d.loc["same", "verdict"]) == (0.0, "same runs")
    # -0.09, -0.11, -0.10 over 3 seeds: t(0.975, 2) = 4.303, sd 0.01
    half = 4.302653 * 0.01 / np.sqrt(3)
    assert d.loc["worse", "diff"] == pytest.approx(-0.1)
    assert (d.loc["worse", "low"], d.loc["worse", "high"]) == pytest.approx((-0.1 - half, -0.1 + half), abs=1e-6)
    assert d.loc["worse", "verdict"] == "worse" and d.loc["worse", "seeds"] == 3
    assert d.loc["noisy", "diff"] == pytest.approx(0.01 / 3) and d.loc["noisy", "verdict"] == "unresolved"
    # short stops at 200 rollouts, before the window
    assert d.loc["short", "seeds"] == 0 and d.loc["short", "verdict"] == "no overlap"
    assert math.isnan(d.loc["short", "diff"])
    # the whole run from 0: a's differences 0, 0.3, 0.2, 0.1, 0 (its evaluation at 0 is grpo's)
    assert paired_differences(table, start=0.0).set_index("strategy").loc["a", "diff"] == pytest.approx(0.12)
    with pytest.raises(ConfigError, match="reference strategy 'nope'"):
        paired_differences(table, reference="nope")


def test_paired_sides_and_their_line():
    sim, real = build(SIM), build(REAL, "real", "hand-real")
    real = pd.concat([real, shifted(real, "d", {0: -0.05, 1: -0.06, 2: -0.04})], ignore_index=True)
    sim = pd.concat([sim, shifted(sim, "d", {0: 0.05, 1: 0.06, 2: 0.04}),
                     shifted(sim, "e", {0: 0.0, 1: 0.0, 2: 0.0})], ignore_index=True)
    table = paired(sim, real)
    assert list(table.columns) == PAIRED_COLUMNS
    assert table["strategy"].tolist() == ["a", "b", "c", "d"]  # the common ones, the sim's order
    t = table.set_index("strategy")
    # sim: a, b, c each 0.2, 0.1, 0 above grpo in the window; real: 0.1, 0, 0
    assert t[["sim_diff", "real_diff"]].loc[["a", "b", "c"]].to_numpy() == pytest.approx(
        np.array([[0.1, 0.1 / 3]] * 3))
    assert (t.loc["d", "sim_verdict"], t.loc["d", "real_verdict"]) == ("better", "worse")
    line = paired_line(table)
    assert "the real seeds resolve 4 of 4 (better: a, b, c; worse: d)" in line
    assert ("the simulator gives 3 of them the same sign (3 resolved alike), the opposite sign to d, "
            "no difference to none") in line
    # a rule the simulator runs as grpo while the real seeds resolve a difference
    flat = table.assign(sim_diff=np.where(table["strategy"] == "d", 0.0, table["sim_diff"]))
    assert "the opposite sign to none, no difference to d" in paired_line(flat)
    assert line.endswith("it resolves what the real seeds do not for none")
    with pytest.raises(ConfigError, match="reference strategy 'nope'"):
        paired(sim, real, reference="nope")


def test_paired_figure_draws_what_differs_and_names_the_rest():
    sim, real = build(SIM), build(REAL, "real", "hand-real")
    same = {0: 0.0, 1: 0.0, 2: 0.0}
    real = pd.concat([real, shifted(real, "d", {0: 0.01, 1: -0.02, 2: 0.0}), shifted(real, "same", same)])
    sim = pd.concat([sim, shifted(sim, "d", {0: -0.05, 1: -0.06, 2: -0.04}), shifted(sim, "same", same)])
    fig = sim_vs_real_differences(paired(sim, real))
    try:
        (ax,) = fig.axes
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points) == 4  # a, b, c, d; "same" ran as grpo on both sides
        # d (real -0.01 / 3, sim -0.05) is hollow: the real seeds do not resolve it; a, b, c are filled
        white = [tuple(c.get_offsets()[0]) for c in points
                 if tuple(c.get_facecolors()[0][:3]) == (1.0, 1.0, 1.0)]
        assert white == [pytest.approx((-0.01 / 3, -0.05))]
        lo, hi = ax.get_xlim()
        assert lo < -0.05 and hi > 0.1  # every interval inside
        assert any("not drawn (same runs or no overlap): same" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)


def test_paired_figure_labels_overlap_neither_each_other_nor_other_points():
    """Five strategies within a label's height of each other: each label finds its own spot."""
    diffs = {"alpha": (0.0, 0.0), "beta": (0.001, 0.0005), "gamma": (-0.001, 0.0005), "delta": (0.0, -0.001),
             "epsilon": (0.0005, 0.001), "far": (-0.03, -0.03)}
    table = pd.DataFrame([{"strategy": s, "reference": "grpo", "sim_diff": y, "sim_low": y - 0.002,
                           "sim_high": y + 0.002, "sim_seeds": 10, "sim_verdict": "unresolved", "real_diff": x,
                           "real_low": x - 0.002, "real_high": x + 0.002, "real_seeds": 10,
                           "real_verdict": "unresolved"} for s, (x, y) in diffs.items()])
    fig = sim_vs_real_differences(table)
    try:
        (ax,) = fig.axes
        renderer = fig.canvas.get_renderer()
        labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
        assert sorted(labels) == sorted(diffs)
        boxes = list(labels.values())
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        centres = ax.transData.transform([(x, y) for x, y in diffs.values()])
        for name, box in labels.items():  # no label covers a point, its own or another's
            assert not any(box.contains(px, py) for px, py in centres), name
    finally:
        plt.close(fig)
