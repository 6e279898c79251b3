import math

import pytest

from allocbench.errors import ConfigError
from analysis.regret import COLUMNS, geometric_mean, regret, render
from tests.analysis.test_validate import build

RULE, RIVALS = "screen_on_plateau", ["grpo", "pilot_commit"]
# Every strategy spends 100 rollouts per step; accuracy at eval steps 0, 2, 4, 6, 8.
# A: target = grpo's peak 0.9: grpo 800, pilot_commit 400, the rule 600 -> ratio 1.5 (not within)
A = {"grpo": ("grpo", [0.5, 0.6, 0.7, 0.8, 0.9]),
     "pilot_commit": ("grpo", [0.5, 0.6, 0.9, 0.9, 0.9]),
     RULE: ("grpo", [0.5, 0.6, 0.7, 0.9, 0.9])}
# B: target 0.9: grpo and the rule 200; pilot_commit never (its whole spend, 800: a bound of 4x)
B = {"grpo": ("grpo", [0.5, 0.9, 0.9, 0.9, 0.9]),
     "pilot_commit": ("grpo", [0.5, 0.6, 0.7, 0.8, 0.85]),
     RULE: ("grpo", [0.5, 0.9, 0.9, 0.9, 0.9])}


@pytest.fixture
def checked():
    return regret([build(A, scenario="a"), build(B, scenario="b")], RULE, RIVALS, n_boot=100)


def test_ratios_and_speedups_by_hand(checked):
    assert list(checked.columns[: len(COLUMNS)]) == COLUMNS
    a, b = checked.set_index("scenario").loc["a"], checked.set_index("scenario").loc["b"]
    assert (a["rollouts"], a["best_rival"], a["best_rival_rollouts"]) == (600, "pilot_commit", 400)
    assert a["ratio"] == pytest.approx(1.5) and not a["within"]
    assert a["speedup_vs_grpo"] == pytest.approx(800 / 600) and a["speedup_vs_pilot_commit"] == pytest.approx(400 / 600)
    assert not a["speedup_vs_pilot_commit_bound"]
    # identical seeds: every bootstrap draw is the point
    assert (a["ratio_low"], a["ratio_high"]) == pytest.approx((1.5, 1.5))
    assert b["ratio"] == pytest.approx(1.0) and b["within"] and b["best_rival"] == "grpo"
    assert b["speedup_vs_pilot_commit_bound"] and b["speedup_vs_pilot_commit"] == pytest.approx(4.0)
    assert b["speedup_vs_pilot_commit_low"] == pytest.approx(4.0)


def test_render_summarises_only_what_was_measured(checked):
    text = render(checked, RULE, RIVALS)
    assert "| sim | a | 8 | 3 | 1.50x [1.50, 1.50] | pilot_commit | 1.33x [1.33, 1.33] | 0.67x [0.67, 0.67] | no |" in text
    assert "≥ 4.00x" in text
    assert "1 of 2 scenarios within 5% of the best rival" in text
    assert f"Geometric-mean speed-up over grpo: {math.sqrt(800 / 600):.2f}x over the 2 scenarios" in text
    assert ("Geometric-mean speed-up over pilot_commit: 0.67x over the 1 scenarios where both reached the "
            "target; in 1 more, pilot_commit never reached the target") in text


def test_tolerance_decides_within():
    table = regret([build(A, scenario="a")], RULE, RIVALS, tolerance=0.5, n_boot=20)
    assert table.loc[0, "within"]


def test_missing_strategy_is_named():
    with pytest.raises(ConfigError, match="no runs of screen_on_plateau"):
        regret([build({"grpo": A["grpo"], "pilot_commit": A["pilot_commit"]})], RULE, RIVALS, n_boot=20)


def test_geometric_mean_skips_what_is_not_a_number():
    assert geometric_mean([2.0, 8.0, math.nan]) == pytest.approx(4.0)
    assert math.isnan(geometric_mean([]))
