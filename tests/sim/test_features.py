import numpy as np
import pytest

from allocbench import ConfigError
from sim import make_env


def logit_fit_r2(features: np.ndarray, p: np.ndarray) -> float:
    """R^2 of the least-squares fit (with intercept) of the pass-rate logits on the features."""
    y = np.log(p / (1 - p))
    design = np.column_stack([features, np.ones(len(features))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return 1 - np.var(y - design @ coef) / np.var(y)


def test_features_are_fixed_per_seed_and_drawn_apart_from_the_pool_and_the_rewards():
    a, b, c = (make_env("default", seed=s, pool_size=500, eval_size=50) for s in (3, 3, 4))
    ids = np.array([7, 0, 499, 7, 520])  # held-out prompts have features too
    fa = a.features(ids)
    assert fa.shape == (5, 2 * (1 + 8)) and fa.dtype == np.float64
    assert np.array_equal(fa, b.features(ids)) and np.array_equal(fa[0], fa[3])
    assert np.array_equal(a.features(ids), fa)  # asked again: the same rows
    assert not np.allclose(fa, c.features(ids))
    # drawing features moved no random stream: b never drew them and samples the same rewards
    assert np.array_equal(a.sampler.sample({i: 16 for i in range(50)})[7].rewards,
                          b.sampler.sample({i: 16 for i in range(50)})[7].rewards)
    with pytest.raises(ValueError, match="outside"):
        a.features(np.array([550]))


@pytest.mark.parametrize("seed", [0, 1])
def test_features_predict_the_pass_rates_only_roughly(seed):
    env = make_env("default", seed=seed, pool_size=4000)
    world, ids = env.info["world"], np.arange(4000)
    r2 = logit_fit_r2(env.features(ids), world.pass_rate(ids))
    assert 0.4 < r2 < 0.6, r2  # the default feature_noise = 1.0: about half the logits' variance
    exact = make_env("default", seed=seed, pool_size=4000, feature_noise=0.0)
    assert logit_fit_r2(exact.features(ids), world.pass_rate(ids)) > 0.999  # at skill 0 logit = offset
    noisier = make_env("default", seed=seed, pool_size=4000, feature_noise=2.0)
    assert logit_fit_r2(noisier.features(ids), world.pass_rate(ids)) < r2 - 0.2


def test_features_track_trained_pass_rates_through_the_loadings():
    # after training moves the skills, the logits depend on the loadings too; noise-free features
    # still explain them linearly (offset + loadings . c(s) - drift is linear in the source)
    env = make_env("default", seed=0, pool_size=2000, feature_noise=0.0)
    world, ids = env.info["world"], np.arange(2000)
    world.params[: world.sc.n_skills] = np.linspace(0.5, 3.0, world.sc.n_skills)
    assert logit_fit_r2(env.features(ids), world.pass_rate(ids)) > 0.999


def test_feature_noise_is_range_checked():
    with pytest.raises(ConfigError, match="feature_noise"):
        make_env("default", feature_noise=-0.5)
