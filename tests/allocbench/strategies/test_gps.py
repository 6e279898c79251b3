import numpy as np
import pytest

import allocbench as ab
from allocbench.strategies.gps import BayesLogistic
from sim import make_env
from tests.allocbench.strategies.test_pcl import RATES, W, X, drive
from tests.conftest import fixed_env


def test_the_posterior_concentrates_on_the_true_weights():
    env = fixed_env(RATES, train_batch=16, group_size=16, shuffle=True)
    gps = ab.make_strategy("gps", discount=1.0)  # no forgetting: a stationary world
    _, memory, log = drive(gps, env, steps=31, features=lambda ids: X[ids])
    traces = [np.trace(log[step][1]["model"].covariance) for step in (1, 10, 20, 30)]  # after 1 .. 30 updates
    prior = (3 + 1) * gps.prior_var
    assert prior > traces[0] > traces[1] > traces[2] > traces[3] and traces[3] < 0.02 * prior, traces
    model = memory["model"]
    # the weights on standardised features: the true ones times each feature's spread
    true = W * np.sqrt(model.scale.m2 / model.scale.count)
    cosine = model.mean[:3] @ true / np.linalg.norm(model.mean[:3]) / np.linalg.norm(true)
    assert cosine > 0.98 and abs(model.mean[3]) < 0.3, (model.mean, true)


def test_prefers_prompts_of_intermediate_predicted_difficulty():
    env = fixed_env(RATES, train_batch=8, group_size=16, shuffle=True)
    _, memory, log = drive(ab.make_strategy("gps", diversity=0.0), env, steps=40, features=lambda ids: X[ids])
    model, rng = memory["model"], np.random.default_rng(1)
    predicted = model.predict(model.inputs(X), 64, rng)
    assert np.corrcoef(predicted, RATES)[0, 1] > 0.95  # it has learned the pass rates
    kept = np.array([g.prompt_id for _, _, groups in log[20:] for g in groups])
    pools = np.concatenate([features for features, _, _ in log[20:]])
    pool_gap = np.abs(model.predict(model.inputs(pools), 64, rng) - 0.5).mean()
    assert np.abs(predicted[kept] - 0.5).mean() < 0.5 * pool_gap  # random picks: ~1x; here ~0.35
    assert np.abs(RATES[kept] - 0.5).mean() < 0.55 * np.abs(RATES - 0.5).mean()  # ~0.37


def test_the_diversity_term_spreads_the_batch_and_is_anchored_in_the_history():
    # 10 identical candidates at predicted 0.5, 10 distinct ones at 0.45 (a pool of 4 x 5)
    rng = np.random.default_rng(0)
    x = np.vstack([np.zeros((10, 4)), rng.standard_normal((10, 4))])
    predicted = np.r_[np.full(10, 0.5), np.full(10, 0.45)]

    def picks(diversity, history=np.zeros((0, 4)), chosen_from=(x, predicted)):
        return ab.make_strategy("gps", diversity=diversity).acquire(*chosen_from, history, 5)

    def mean_distance(rows):
        return np.mean([np.linalg.norm(x[a] - x[b]) for a in rows for b in rows if a < b])

    assert set(picks(0.0)) <= set(range(10)) and mean_distance(picks(0.0)) == 0  # all clones
    diverse = picks(0.5)
    assert (diverse < 10).sum() == 1 and mean_distance(diverse) > 1.0  # one clone, then spread
    # the history: prompts trained last step near the clones' point push the batch off it
    anchored = picks(0.5, history=np.full((3, 4), 0.01))
    assert (anchored < 10).sum() == 0
    assert len(set(diverse.tolist())) == 5 and len(set(anchored.tolist())) == 5
    # a candidate whose priority trails the 5th best by more than the diversity weight is never
    # picked, however far it lies from the others
    far, far_predicted = x.copy(), predicted.copy()
    far[19], far_predicted[19] = 100.0, 0.44  # priority -0.06; the 5th best is 0 (a clone)
    assert 19 not in picks(0.055, chosen_from=(far, far_predicted))
    assert 19 in picks(0.5, chosen_from=(far, far_predicted))


def test_anchors_are_the_last_steps_trained_prompts():
    env = fixed_env(RATES, train_batch=8, group_size=16, shuffle=True)
    _, memory, log = drive(ab.make_strategy("gps", anchor_steps=2), env, steps=5, features=lambda ids: X[ids])
    trained = [np.array([g.prompt_id for g in groups]) for _, _, groups in log]
    assert len(memory["anchors"]) == 2
    assert np.array_equal(memory["anchors"][0], X[trained[3]]) and np.array_equal(memory["anchors"][1], X[trained[4]])


def test_spends_no_screening_rollouts_and_b_times_n_in_one_round_per_step():
    env = make_env("default", seed=0, pool_size=600, eval_size=50)
    ledger, _, log = drive(ab.make_strategy("gps"), env, steps=6, features=env.features)
    assert ledger.total.pilot_rollouts == 0
    assert ledger.total.rollouts == 6 * 64 * 16 and ledger.total.rounds == 6
    assert ledger.total.feature_prompts == 6 * 4 * 64
    for features, _, groups in log:
        assert len(groups) == 64 == len({g.prompt_id for g in groups}) and all(g.n == 16 for g in groups)


def test_wide_features_are_projected():
    model = BayesLogistic(300, 64, 1.0, np.random.default_rng(0))
    raw = np.random.default_rng(1).standard_normal((50, 300))
    model.observe(raw)
    assert model.inputs(raw).shape == (50, 64) and model.mean.shape == (65,)
    model.update(model.inputs(raw[:10]), np.full(10, 3.0), np.full(10, 8.0), 0.9, 1.0)
    assert model.predict(model.inputs(raw), 4, np.random.default_rng(2)).shape == (50,)


def test_an_environment_without_features_is_refused_before_a_rollout():
    env = fixed_env(RATES, train_batch=4, group_size=8)
    with pytest.raises(ab.ConfigError, match="gps needs prompt features"):
        drive(ab.make_strategy("gps"), env, steps=1)
    assert env.sampler.calls == []


@pytest.mark.parametrize("bad", [dict(pool_factor=0), dict(target=1.2), dict(diversity=-0.1),
                                 dict(anchor_steps=-1), dict(discount=1.1), dict(prior_var=0.0),
                                 dict(samples=0), dict(max_dim=0)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("gps", **bad)
