import numpy as np
import pytest

import allocbench as ab
from allocbench.strategies.vip import allocate
from tests.conftest import fixed_env

# B = the pool, no shuffle: every step sees every prompt once, so from step 2 on each prompt's
# prediction rests on its last group (FixedSampler's accuracy is exactly the pass rate)
RATES = np.array([0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 0.5, 0.0])


def test_gives_more_rollouts_near_one_half_and_spends_exactly_the_budget():
    env = fixed_env(RATES, train_batch=len(RATES), group_size=16)
    table = ab.run(env, ab.make_strategy("vip", prior_strength=0.0), ab.RunConfig(steps=4))
    calls = env.sampler.calls
    assert len(calls) == 4 and (table.rounds[1:] == 1).all()  # one generation round per step
    assert calls[0] == {i: 16 for i in range(8)}  # nothing known yet: uniform
    for call in calls[1:]:
        counts = np.array([call[i] for i in range(8)])
        assert counts.sum() == 8 * 16  # exactly B x n
        assert counts.min() >= 2 and counts.max() <= 64
        # closest to 1/2 gets most; symmetric rates get equal shares; the extremes get least
        assert counts[3] == counts[6] == counts.max()
        assert counts[3] > counts[2] > counts[1] > counts[0]
        assert abs(counts[2] - counts[4]) <= 1  # equal up to the rounding of the remainder
        assert counts[0] == counts[5] == counts[7] == 2  # p̂ = 0 or 1 (no shrinkage here): n_min
    assert (table.step_rollouts[1:] == 8 * 16).all() and (table.trained_rollouts[1:] == 8 * 16).all()


def test_allocation_is_exact_and_bounded_for_any_weights():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(1, 40))
        lo, hi = int(rng.integers(1, 4)), int(rng.integers(4, 40))
        budget = int(rng.integers(k * lo, k * hi + 1))
        p = rng.random(k) * (rng.random(k) < 0.7)  # some exact zeros
        counts = allocate(p * (1 - p), budget, lo, hi)
        assert counts.sum() == budget and counts.min() >= lo and counts.max() <= hi
    # n - 1 proportional to sqrt(p(1-p)) when no bound binds
    counts = allocate(np.array([0.25, 0.25 / 4]), 2 + 30, 1, 100)
    assert counts.tolist() == [21, 11]


def test_prediction_shrinks_the_last_accuracy_toward_the_pool_mean():
    vip = ab.make_strategy("vip", prior_strength=4.0)
    p = vip.predict(np.array([0, 1]), {0: (1.0, 16)}, pool_mean=0.2)
    assert p == pytest.approx([(16 * 1.0 + 4 * 0.2) / 20, 0.2])  # unseen prompt 1: the pool mean


def test_runs_on_the_sim_and_differs_from_grpo_once_prompts_repeat():
    from sim import make_env
    env = make_env("default", seed=0, pool_size=256)  # B = 64: a new epoch every 4 steps
    table = ab.run(env, ab.make_strategy("vip"), ab.RunConfig(steps=12))
    assert (table.step_rollouts[1:] == 64 * 16).all()
    assert (table.prompts_trained[1:] == 64).all()
    # from the second epoch on rollouts move to p̂ near 1/2: more advantage signal per step
    grpo = ab.run(make_env("default", seed=0, pool_size=256), ab.make_strategy("grpo"),
                  ab.RunConfig(steps=12))
    assert table.learn_signal[5:].mean() > grpo.learn_signal[5:].mean()


@pytest.mark.parametrize("bad", [dict(n_min=0), dict(n_max=0), dict(prior_strength=-1.0),
                                 dict(pool_momentum=1.0), dict(n_min=2.5)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("vip", **bad)


@pytest.mark.parametrize("bad", [dict(n_min=17), dict(n_max=8)])
def test_bounds_that_cannot_spend_b_times_n_are_refused(bad):
    env = fixed_env(RATES, train_batch=4, group_size=16)
    with pytest.raises(ab.ConfigError, match="n_min <= n <= n_max"):
        ab.run(env, ab.make_strategy("vip", **bad), ab.RunConfig(steps=1))
