import numpy as np
import pytest

from allocbench.errors import ConfigError
from allocbench.probe import probe
from sim import make_env


def test_probe_estimates_every_prompts_true_pass_rate():
    env = make_env("default", seed=0, pool_size=600, eval_size=100)
    table = probe(env, k=64, batch_prompts=128)
    assert table.prompt_id.tolist() == list(range(600)) and (table.k == 64).all()
    assert np.allclose(table.pass_rate, table.correct / 64)
    # k-sample estimates scatter around the truth by the binomial standard error
    err = table.pass_rate - table.prompt_pass_rate
    assert abs(err.mean()) < 0.01 and 0.02 < err.std() < 0.07
    assert np.corrcoef(table.pass_rate, table.prompt_pass_rate)[0, 1] > 0.95


def test_probe_spends_nothing_a_run_counts_and_refuses_k_zero():
    env = make_env("default", seed=0, pool_size=200, eval_size=50)
    before = env.evaluator.evaluate()["eval_acc"]
    probe(env, k=4)
    assert env.evaluator.evaluate()["eval_acc"] == before  # sampling trains nothing
    with pytest.raises(ConfigError, match="--k must be a positive integer"):
        probe(env, k=0)


def test_feature_predictions_are_out_of_fold_and_recover_a_known_share():
    from allocbench.probe import feature_predictions, r_squared

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 6))
    signal = x @ np.array([1.0, -0.5, 0.5, 0.0, 0.0, 0.0])
    y = signal + rng.standard_normal(2000) * signal.std()  # the features explain half the variance
    assert r_squared(y, feature_predictions(x, y)) == pytest.approx(0.5, abs=0.05)
    # 60 features of pure noise for 150 prompts: in-sample least squares would claim R^2 ~0.4;
    # out of fold they predict nothing
    noise = rng.standard_normal((150, 60))
    target = rng.standard_normal(150)
    assert r_squared(target, feature_predictions(noise, target)) < 0.05


def test_probe_measures_how_much_the_features_tell():
    from allocbench.probe import feature_r2

    r2 = []
    for feature_noise in (0.0, 1.0, 3.0):
        env = make_env("default", seed=0, pool_size=1500, eval_size=100, feature_noise=feature_noise)
        table = probe(env, k=16)
        assert table["feature_pred"].notna().all()
        r2.append(feature_r2(table))
    assert r2[0] > 0.8 and r2[0] > r2[1] > r2[2] and r2[2] < 0.2
    with pytest.raises(ConfigError, match="the probe has no feature predictions"):
        feature_r2(table.drop(columns="feature_pred"))
