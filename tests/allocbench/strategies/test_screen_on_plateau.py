from math import comb

import numpy as np
import pandas as pd
import pytest

import allocbench as ab
from sim import make_env
from tests.conftest import collect_steps

# B = 16 prompts of n = 16 on the default scenario: 100 steps take a tenth of a second
SMALL = dict(train_batch=16, pool_size=4000)


def drive(strategy, env, steps, seed=0):
    """The runner's loop with the learner, keeping the rule's memory in view: [(stalled, pilot_n)]."""
    return [(strategy.stalled(np.array(ctx.memory["pass_rate"])), ctx.memory.get("pilot_n"))
            for ctx, _, _ in collect_steps(strategy, env, steps, seed=seed, learn=True)]


def test_saturated_steps_stall_but_stay_uniform():
    # almost no gradient noise: the run learns what it can and stops, and cleaner batches have
    # nothing to buy (B_simple stays far below the 256 rollouts of a step even at the plateau,
    # where the signal fades; with noise_scale 1 it grows past them there and the rule screens)
    env = make_env("default", seed=0, noise_scale=0.01, lr=0.2, **SMALL)
    log = drive(ab.make_strategy("screen_on_plateau", window=10), env, steps=100)
    assert any(stalled for stalled, _ in log)
    assert all(pilot_n is None for _, pilot_n in log)


def test_noise_limited_steps_switch_to_screening_after_a_stall():
    env = make_env("default", seed=0, noise_scale=50_000.0, lr=0.05, **SMALL)
    table = ab.run(env, ab.make_strategy("screen_on_plateau", window=10), ab.RunConfig(steps=100, seed=0))
    screened = table[table.pilot_rollouts > 0]
    first = screened.step.min()
    assert 20 <= first < 100  # not before two windows of evidence
    assert (table.step[table.step >= first] == screened.step).all()  # once screening, it stays
    assert (screened.prompts_trained == 16).all() and (screened.trained_rollouts == 16 * 16).all()
    # screening removes the collapsed groups uniform steps were training on
    before = table[(table.step > 0) & (table.step < first)]
    assert screened.zero_var_groups.mean() < 0.5 * before.zero_var_groups.mean()


def test_until_it_screens_it_is_grpo_rollout_for_rollout():
    env = dict(scenario="default", seed=0, noise_scale=50_000.0, lr=0.05, **SMALL)
    rule = ab.run(make_env(**env), ab.make_strategy("screen_on_plateau", window=10), ab.RunConfig(steps=60, seed=0))
    grpo = ab.run(make_env(**env), ab.make_strategy("grpo"), ab.RunConfig(steps=60, seed=0))
    first = rule.step[rule.pilot_rollouts > 0].min()
    same = ["cum_rollouts", "cum_tokens", "train_reward", "eval_acc", "learn_noise_trace"]
    pd.testing.assert_frame_equal(rule.loc[rule.step < first, same], grpo.loc[grpo.step < first, same])
    assert not np.allclose(rule.learn_noise_trace[rule.step >= first], grpo.learn_noise_trace[grpo.step >= first])


def test_never_overspends_the_ledger():
    env = make_env("default", seed=1, noise_scale=50_000.0, lr=0.05, **SMALL)
    table = ab.run(env, ab.make_strategy("screen_on_plateau", window=10), ab.RunConfig(steps=200, budget=40_000))
    assert table.pilot_rollouts.sum() > 0  # the budget ran out while screening
    assert table.cum_rollouts.iloc[-1] <= 40_000 < table.cum_rollouts.iloc[-1] + 3 * 16 * 16
    assert table.step.iloc[-1] < 200


def test_stall_test():
    rule = ab.make_strategy("screen_on_plateau", window=20)
    rng = np.random.default_rng(0)
    rising = np.linspace(0.2, 0.8, 60) + rng.normal(0, 0.005, 60)
    plateau = np.r_[np.linspace(0.2, 0.7, 30), np.full(30, 0.7)] + rng.normal(0, 0.005, 60)
    noisy = np.r_[np.linspace(0.2, 0.7, 30), np.full(30, 0.7)] + rng.normal(0, 0.3, 60)
    assert rule.stalled(plateau) and not rule.stalled(rising)
    assert not rule.stalled(noisy)  # flat within noise it cannot prove: no switch
    assert not rule.stalled(plateau[:39])  # fewer than two windows: no verdict


def test_step_cost_by_hand():
    rule = ab.make_strategy("screen_on_plateau")
    # every uniform group 2 of 4 right: a pilot of 2 is one right, one wrong (kept) with
    # chance C(2,1) C(2,1) / C(4,2) = 2/3; a screened step costs 1 + (2/4)(1/3)/(2/3) = 1.25
    counts = np.array([0, 0, 10, 0, 0])
    assert rule.step_cost(2, 4, counts) == pytest.approx(1.25)
    # pilot of 3 from n = 6 groups with 1 right: kept iff the right one is drawn (1/3 in the
    # keep band [0.125, 0.75]): chance 1/2, cost 1 + (3/6)(1/2)/(1/2) = 1.5
    assert rule.step_cost(3, 6, np.array([0, 5, 0, 0, 0, 0, 0])) == pytest.approx(1.5)
    # all-solved groups can never be kept
    assert rule.step_cost(2, 4, np.array([0, 0, 0, 0, 7])) == np.inf


def test_plan_takes_the_cheapest_pilot_and_refuses_what_cannot_pay():
    rule = ab.make_strategy("screen_on_plateau")
    n = 16
    binomial = np.array([comb(n, c) for c in range(n + 1)], float)  # pass rate 0.5 everywhere
    noisy = {"noise": [[100.0, 0.001, 0.5]] * 10, "correct_counts": [binomial]}
    costs = {p: rule.step_cost(p, n, binomial) for p in range(2, 9)}
    assert rule.plan(noisy, 8, n) == min(costs, key=costs.get)
    saturated = {**noisy, "noise": [[1.0, 1.0, 0.5]] * 10}  # B_simple = 1 rollout: no gain
    assert rule.snr_gain(saturated, 8 * n) < 1.01 and rule.plan(saturated, 8, n) is None
    solved = np.zeros(n + 1)
    solved[[0, n]] = [1, 99]  # nearly every prompt solved: a kept pilot costs too many rejected
    assert rule.plan({**noisy, "correct_counts": [solved]}, 8, n) is None
    # an unmeasured noise scale counts as noise-limited: the gain is 1 / sqrt(1 - z)
    unknown = {**noisy, "noise": [[np.nan, np.nan, 0.75]]}
    assert rule.snr_gain(unknown, 8 * n) == pytest.approx(2.0)


def test_hyper_parameters_are_range_checked():
    with pytest.raises(ab.ConfigError, match="max_pilot_fraction"):
        ab.make_strategy("screen_on_plateau", max_pilot_fraction=1.0)
    with pytest.raises(ab.ConfigError, match="min_snr_gain"):
        ab.make_strategy("screen_on_plateau", min_snr_gain=0.5)
