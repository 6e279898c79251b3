import copy

import numpy as np
import pytest

import allocbench as ab
from sim import make_env
from tests.conftest import collect_steps, fixed_env

# a hand-made world: pass rate sigmoid(w . x) on 3 features, so a logistic value model can learn it
RNG = np.random.default_rng(0)
X = RNG.standard_normal((3000, 3))
W = np.array([2.0, -1.5, 0.5])
RATES = 1 / (1 + np.exp(-(X @ W)))


def drive(strategy, env, steps, features=None, seed=0):
    """collect() step by step through a ledger that has ``features``; returns the ledger,
    the memory and, per step, (pool features, a copy of the memory before the step, groups)."""
    asked = []

    def counted(ids):
        asked.append(features(ids))
        return asked[-1]

    memory, log, before = {}, [], {}
    for ctx, groups, _ in collect_steps(strategy, env, steps, seed=seed, memory=memory,
                                        features=counted if features is not None else None):
        log.append((asked[-1], before, groups))
        before = copy.deepcopy(memory)  # the next step's memory before it runs
    return ctx.sampler, memory, log


def test_keeps_the_prompts_whose_predicted_success_rate_is_nearest_one_half():
    env = fixed_env(RATES, train_batch=8, group_size=16, shuffle=True)
    _, memory, log = drive(ab.make_strategy("pcl", hidden=0), env, steps=40, features=lambda ids: X[ids])
    near, pool_gap, true_near, true_pool = [], [], [], []
    for features, memory_before, groups in log[20:]:
        before = memory_before["value"]
        before.scale.update(features)  # the step folds its pool into the standardisation first
        predicted = before.predict(features)
        chosen = np.argsort(np.abs(predicted - 0.5), kind="stable")[:8]
        ids = [g.prompt_id for g in groups]
        assert np.allclose(np.sort(predicted[chosen]), np.sort(before.predict(X[ids])))  # these were kept
        near.append(np.abs(predicted[chosen] - 0.5).mean())
        pool_gap.append(np.abs(predicted - 0.5).mean())
        true_near.append(np.abs(RATES[ids] - 0.5).mean())
    true_pool = np.abs(RATES - 0.5).mean()
    assert np.mean(near) < 0.4 * np.mean(pool_gap)  # predicted p of the kept ones: near 0.5 (random: ~1x)
    assert np.mean(true_near) < 0.5 * true_pool  # and, the model having learned, their true p too


def test_target_moves_the_selection():
    env = fixed_env(RATES, train_batch=8, group_size=16, shuffle=True)
    _, _, log = drive(ab.make_strategy("pcl", target=0.85), env, steps=30, features=lambda ids: X[ids])
    kept = [RATES[g.prompt_id] for _, _, groups in log[15:] for g in groups]
    assert 0.7 < np.mean(kept) < 0.95


@pytest.mark.parametrize("hidden", [0, 32])
def test_the_value_models_error_falls_as_it_trains(hidden):
    env = fixed_env(RATES, train_batch=16, group_size=16, shuffle=True)
    _, memory, log = drive(ab.make_strategy("pcl", hidden=hidden), env, steps=40, features=lambda ids: X[ids])
    models = [log[1][1]["value"], log[10][1]["value"], memory["value"]]  # after 1, 10 and 40 updates
    error = [np.mean((model.predict(X) - RATES) ** 2) for model in models]
    untrained = np.mean((0.5 - RATES) ** 2)  # V = 0.5 everywhere before the first update
    assert error[2] < error[1] < error[0] < untrained and error[2] < 0.15 * untrained, (error, untrained)


def test_spends_no_screening_rollouts_and_b_times_n_in_one_round_per_step():
    env = make_env("default", seed=0, pool_size=600, eval_size=50)
    ledger, _, log = drive(ab.make_strategy("pcl", pool_factor=3), env, steps=6, features=env.features)
    assert ledger.total.pilot_rollouts == 0
    assert ledger.total.rollouts == 6 * 64 * 16 and ledger.total.rounds == 6
    assert ledger.total.feature_prompts == 6 * 3 * 64 and ledger.total.feature_tokens == 0
    for features, _, groups in log:
        assert len(features) == 3 * 64 and len(groups) == 64 and all(g.n == 16 for g in groups)


def test_an_environment_without_features_is_refused_before_a_rollout():
    env = fixed_env(RATES, train_batch=4, group_size=8)
    with pytest.raises(ab.ConfigError, match="pcl needs prompt features"):
        drive(ab.make_strategy("pcl"), env, steps=1)
    assert env.sampler.calls == []


@pytest.mark.parametrize("bad", [dict(pool_factor=0), dict(target=1.5), dict(target=-0.1), dict(hidden=-1),
                                 dict(lr=0.0), dict(value_steps=0), dict(pool_factor=2.5)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("pcl", **bad)
