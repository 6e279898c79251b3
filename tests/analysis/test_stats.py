import math

import numpy as np
import pandas as pd
import pytest

from allocbench.metrics import speedup_table
from analysis import stats
from tests.analysis.conftest import make_table


@pytest.mark.parametrize("q, df, expected", [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 10, 2.2281),
                                             (0.975, 30, 2.0423), (0.95, 5, 2.0150), (0.025, 4, -2.7764)])
def test_t_quantile_matches_tables(q, df, expected):
    assert stats.t_quantile(q, df) == pytest.approx(expected, abs=1e-4)


def test_t_interval_by_hand():
    mean, lo, hi = stats.t_interval([1.0, 2.0, 3.0])  # sd 1, n 3
    half = 4.302653 / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-5)
    assert stats.t_interval([4.0]) == (4.0, 4.0, 4.0)  # one seed: no spread
    assert stats.t_interval([np.nan, 2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_bootstrap_degenerate_and_hand_computed():
    assert stats.bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert stats.bootstrap_ci([7.0]) == (7.0, 7.0, 7.0)
    # resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4:
    # the 2.5 / 97.5 percentiles are 0 and 1, the 30 / 70 percentiles both 0.5
    assert stats.bootstrap_ci([0.0, 1.0], n_boot=4000, seed=0) == (0.5, 0.0, 1.0)
    assert stats.bootstrap_ci([0.0, 1.0], n_boot=4000, level=0.4, seed=0) == (0.5, 0.5, 0.5)


def test_bootstrap_contains_point_and_is_reproducible():
    sample = [1.0, 2.0, 3.0, 4.0, 10.0]
    point, lo, hi = stats.bootstrap_ci(sample, n_boot=500, seed=3)
    assert point == pytest.approx(4.0) and lo <= point <= hi and lo >= 1.0 and hi <= 10.0
    assert stats.bootstrap_ci(sample, n_boot=500, seed=3) == (point, lo, hi)
    assert stats.bootstrap_ci(sample, np.median, n_boot=500, seed=3)[0] == 3.0


def test_rollouts_to_target_and_speedup_by_hand():
    table = make_table()
    # target 0.7 on identical seeds: grpo reaches at step 4 (400 rollouts), fast at step 2
    # (300), dapo at step 8 (2400) -> speed-ups over grpo 400/300 and 400/2400
    point, boot = stats.rollouts_to_target(table, 0.7, n_boot=200)
    assert point == {"grpo": 400.0, "dapo": 2400.0, "fast": 300.0}
    assert all((b == point[s]).all() for s, b in boot.items())  # every resample is the same run
    sp = stats.speedup_ci(table, 0.7, n_boot=200).set_index(["strategy", "reference"])
    assert sp.loc[("fast", "grpo"), "speedup"] == pytest.approx(4 / 3)
    assert sp.loc[("fast", "grpo"), ["low", "high"]].tolist() == pytest.approx([4 / 3, 4 / 3])
    assert sp.loc[("dapo", "grpo"), "speedup"] == pytest.approx(1 / 6)
    assert sp.loc[("grpo", "dapo"), "speedup"] == pytest.approx(6.0)
    assert ("grpo", "grpo") not in sp.index and sp["valid"].eq(1.0).all()
    # the same numbers as the core's speedup_table (at a target no seed mean sits on: the core
    # compares without tolerance, and the mean of three 0.7s is 0.6999999999999998)
    core = speedup_table(table, 0.66).set_index("strategy")
    sp = stats.speedup_ci(table, 0.66, n_boot=200).set_index(["strategy", "reference"])
    for name, ref in [("fast", "grpo"), ("fast", "dapo"), ("dapo", "grpo"), ("grpo", "dapo")]:
        assert core.loc[name, f"speedup_vs_{ref}"] == pytest.approx(sp.loc[(name, ref), "speedup"])


def test_speedup_interval_spans_the_seeds():
    # seeds shift every accuracy by seed * 0.05: seed 0 reaches 0.75 later than seed 2
    table = make_table(strategies=("grpo", "fast"), seed_shift=0.05)
    sp = stats.speedup_ci(table, 0.75, n_boot=500, seed=1).iloc[0]
    assert sp["low"] <= sp["speedup"] <= sp["high"]
    assert sp["low"] < sp["high"]


def test_target_never_reached_gives_nan():
    point, boot = stats.rollouts_to_target(make_table(), 0.99, n_boot=50)
    assert math.isnan(point["grpo"]) and np.isnan(boot["grpo"]).all()
    sp = stats.speedup_ci(make_table(), 0.99, n_boot=50)
    assert sp["speedup"].isna().all() and (sp["valid"] == 0).all()


def test_kendall_tau_by_hand():
    assert stats.kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert stats.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert stats.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # one discordant pair
    # tau-b with a tie: S = 2, 3 pairs, 2 untied in y -> 2 / sqrt(3 * 2)
    assert stats.kendall_tau([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / math.sqrt(6))
    assert stats.kendall_tau([1, np.inf, np.inf], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(stats.kendall_tau([1, 1], [1, 2]))


def test_kendall_taus_row_by_row():
    x = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, np.inf, np.inf, 5], [2, 2, 2, 2]])
    y = np.array([[4, 3, 2, 1], [1, 3, 2, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
    taus = stats.kendall_taus(x, y)
    assert taus[:3] == pytest.approx([-1.0, 4 / 6, stats.kendall_tau(x[2], y[2])]) and math.isnan(taus[3])
    assert stats.kendall_taus([1, 2, 3, 4], y) == pytest.approx([-1.0, 4 / 6, 1.0, 1.0])  # one row for every row
    rng = np.random.default_rng(0)  # ties and +inf: as the one-pair-of-vectors tau, row by row
    a, b = rng.integers(0, 4, (200, 6)).astype(float), rng.integers(0, 4, (200, 6)).astype(float)
    a[a == 3] = np.inf
    assert np.allclose(stats.kendall_taus(a, b), [_tau_pairs(p, q) for p, q in zip(a, b)], equal_nan=True)


def _tau_pairs(x, y) -> float:
    """Kendall's tau-b pair by pair, as the textbook writes it: the reference for the rows."""
    s = tx = ty = n = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            sx = 0 if x[i] == x[j] else np.sign(x[i] - x[j])
            sy = 0 if y[i] == y[j] else np.sign(y[i] - y[j])
            s, n, tx, ty = s + sx * sy, n + 1, tx + (sx == 0), ty + (sy == 0)
    return s / math.sqrt((n - tx) * (n - ty)) if n > tx and n > ty else math.nan


def test_ranks_put_unreached_last():
    assert stats.ranks([300.0, np.nan, 100.0, np.inf]).tolist() == [2.0, 3.5, 1.0, 3.5]


def test_rank_agreement_perfect_and_reversed():
    sim = make_table()
    same = make_table(env="real")
    agree = stats.rank_agreement(sim, same, 0.7, 0.7, n_boot=100)
    assert agree["tau"] == pytest.approx(1.0) and agree["low"] == agree["high"] == pytest.approx(1.0)
    # real: reverse the order (fast slowest, dapo fastest)
    reversed_acc = {"grpo": [0.5, 0.6, 0.7, 0.8, 0.9], "dapo": [0.5, 0.75, 0.8, 0.85, 0.9],
                    "fast": [0.5, 0.55, 0.6, 0.65, 0.7]}
    rev = make_table(env="real", acc=reversed_acc)
    # real rollouts to 0.7: grpo 400, dapo 600 (step 2), fast 1200 (step 8) vs sim 400 / 2400 / 300
    agree = stats.rank_agreement(sim, rev, 0.7, 0.7, n_boot=100)
    assert agree["sim_rank"].tolist() == [2.0, 3.0, 1.0]
    assert agree["real_rank"].tolist() == [1.0, 2.0, 3.0]
    assert agree["tau"] == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="fewer than two"):
        stats.rank_agreement(sim, make_table(strategies=("grpo",), env="real"), 0.7, 0.7)


def test_default_target_is_recomputed_in_every_draw():
    """target None: each draw's target is the peak of its redrawn grpo curve (checked against a
    recomputation from the same seed draws), so grpo reaches it in every draw; a fixed target
    is missed by the draws whose grpo curve peaks lower."""
    table = make_table(strategies=("grpo", "fast"), seeds=(0, 1, 2), seed_shift=0.03)
    point, boot = stats.rollouts_to_target(table, None, n_boot=300, seed=4)
    curves = stats.seed_curves(table)
    draws = stats._draws(curves, 300, 4)["grpo"]
    acc, x = curves["grpo"].acc, curves["grpo"].x
    for b, seeds in enumerate(draws[:50]):
        mean = acc[seeds].mean(axis=0)
        first = int(np.argmax(mean >= mean.max() - 1e-9))
        assert boot["grpo"][b] == x[seeds].mean(axis=0)[first]
    assert np.isfinite(boot["grpo"]).all()
    full_peak = acc.mean(axis=0).max()
    assert point["grpo"] == stats.rollouts_to_target(table, full_peak)[0]["grpo"]
    fixed = stats.rollouts_to_target(table, full_peak, n_boot=300, seed=4)[1]["grpo"]
    assert 0.1 < np.isnan(fixed).mean() < 0.9  # the draws whose seed mean peaks below the full sample's
    with pytest.raises(ValueError, match="no dapo runs in the table"):
        stats.rollouts_to_target(table, None, reference="dapo")


def _two_kinds(seeds_x, seeds_y, step=100) -> pd.DataFrame:
    """grpo reaches its peak 0.9 at step 4 in every seed; a reaches 0.9 at step 1 and b at
    step 3 in the seeds ``seeds_x``, the other way round in ``seeds_y``."""
    fast, slow = [0.5, 0.9, 0.9, 0.9, 0.9], [0.5, 0.5, 0.5, 0.9, 0.9]
    curves = {"grpo": {s: [0.5, 0.6, 0.7, 0.8, 0.9] for s in (*seeds_x, *seeds_y)},
              "a": {**{s: fast for s in seeds_x}, **{s: slow for s in seeds_y}},
              "b": {**{s: slow for s in seeds_x}, **{s: fast for s in seeds_y}}}
    return pd.DataFrame([{"strategy": name, "seed": seed, "step": k, "eval_acc": acc[k], "cum_rollouts": step * k}
                         for name, per_seed in curves.items() for seed, acc in per_seed.items() for k in range(5)])


def test_replicate_agreement_by_hand():
    # real: a before b in seeds 0, 1 and b before a in seeds 2, 3 (grpo last in both). One seed
    # a side: two seeds of one kind agree (tau 1), of two kinds tau 1/3 (only a-b discordant).
    # Two a side: {0, 1} against {2, 3} gives 1/3; a mixed pair ties a with b on both sides: 1.
    real = _two_kinds((0, 1), (2, 3))
    sim = _two_kinds((10, 11, 12), ())  # always a before b
    out = stats.replicate_agreement(sim, real, n_splits=400, seed=3)
    assert list(out.columns) == stats.REPLICATE_COLUMNS and out["seeds_per_side"].tolist() == [1, 2]
    one, two = out.iloc[0], out.iloc[1]
    assert (one.real_low, one.real_high) == pytest.approx((1 / 3, 1.0))  # both values occur
    assert one.real_tau == pytest.approx(5 / 9, abs=0.06)  # P(same kind) = 1/3
    assert two.real_tau == pytest.approx(7 / 9, abs=0.06)  # P({0, 1} or {2, 3} first) = 1/3
    # the simulated seeds (a before b) against the first real set: 1 when it is of a's kind, 1/3
    # when of b's; at two a side a tied pair gives tau-b 2 / sqrt(6)
    assert one.sim_tau == pytest.approx(2 / 3, abs=0.06)
    assert (two.sim_low, two.sim_high) == pytest.approx((1 / 3, 1.0))
    assert two.sim_tau == pytest.approx((1 + 1 / 3 + 4 * 2 / math.sqrt(6)) / 6, abs=0.06)
    # same seed, same table; the splits are random, so another seed draws others
    assert stats.replicate_agreement(sim, real, n_splits=400, seed=3).equals(out)


def test_replicate_agreement_needs_the_seeds():
    real = _two_kinds((0, 1), (2, 3))
    few = stats.replicate_agreement(_two_kinds((10,), ()), real, n_splits=20)
    # the simulator has one seed: compared at one seed a side, not at two
    assert np.isfinite(few["sim_tau"].iloc[0]) and np.isnan(few["sim_tau"].iloc[1])
    assert np.isfinite(few["real_tau"]).all()
    single = stats.replicate_agreement(real, _two_kinds((0,), ()), n_splits=20)
    assert single.empty  # one real seed: nothing to split
    with pytest.raises(ValueError, match="fewer than two strategies"):
        stats.replicate_agreement(real[real.strategy == "grpo"], real, n_splits=5)


def test_exact_model_tau_matches_a_monte_carlo_of_its_model():
    """17 strategies with normal true scores (variance 1) and per-seed noise of variance 4: the
    mean tau between two boards of 5 seeds, extrapolated to 20 seeds, gives the mean tau of the
    truth against boards of 20 (2,000 draws; their standard error is ~0.004), and the seeds it
    says a tau of 0.8 needs do reach it."""
    rng = np.random.default_rng(0)
    draws, k, noise = 2_000, 17, 4.0

    def board(truth, seeds):
        return truth + rng.normal(0, math.sqrt(noise / seeds), truth.shape)

    truth = rng.normal(0, 1, (draws, k))
    split = np.mean([stats.kendall_tau(a, b) for a, b in zip(board(truth, 5), board(truth, 5))])
    for n in (20, 60):
        measured = np.mean([stats.kendall_tau(t, b) for t, b in zip(truth, board(truth, n))])
        assert stats.exact_model_tau(split, 5, n) == pytest.approx(measured, abs=0.02)
    need = stats.seeds_for_tau(split, 5, 0.8)
    assert 4 / (1 / math.sin(0.4 * math.pi) ** 2 - 1) == pytest.approx(need, rel=0.15)  # s2 / V / (1/r^2 - 1)
    assert np.mean([stats.kendall_tau(t, b) for t, b in zip(truth, board(truth, round(need)))]) == pytest.approx(0.8, abs=0.02)
    assert math.isnan(stats.exact_model_tau(0.0, 5, 20)) and math.isnan(stats.seeds_for_tau(-0.1, 5, 0.8))
    assert stats.exact_model_tau(1.0, 5, 20) == 1.0


def test_exact_model_pass_chance_matches_boards_drawn_with_kendall_tau():
    """The same model drawn independently, tau by ``kendall_tau``: per-seed noise 4x the spread
    of the true scores, 17 strategies, split agreement at 5 seeds from the model itself. The
    chance of tau >= 0.8 grows with the board's seeds, and the drawn boards agree with it."""
    rng = np.random.default_rng(1)
    k, noise, m = 17, 4.0, 5
    split = 2 / math.pi * math.asin(1 / (1 + noise / m))
    chances = []
    for n in (10, 40, 160):
        truth = rng.normal(0, 1, (3_000, k))
        board = truth + rng.normal(0, math.sqrt(noise / n), truth.shape)
        drawn = np.mean([stats.kendall_tau(t, b) >= 0.8 for t, b in zip(truth, board)])
        chance = stats.exact_model_pass_chance(split, m, n, k, 0.8)
        assert chance == pytest.approx(drawn, abs=0.03)
        chances.append(chance)
    assert chances[0] < 0.05 < chances[1] < chances[2]
    assert stats.exact_model_pass_chance(1.0, m, 10, k, 0.8) == 1.0  # a noise-free board is the truth
    assert math.isnan(stats.exact_model_pass_chance(0.0, m, 10, k, 0.8))
