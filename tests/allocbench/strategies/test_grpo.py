import numpy as np
import pytest

import allocbench as ab
from tests.conftest import fixed_env


def test_grpo_trains_every_group_of_b_prompts_with_n_rollouts():
    env = fixed_env(np.r_[np.zeros(10), np.full(10, 0.5), np.ones(10)], train_batch=5, group_size=4)
    table = ab.run(env, ab.make_strategy("grpo"), ab.RunConfig(steps=6))
    steps = table[table.step > 0]
    assert (steps.prompts_trained == 5).all() and (steps.step_rollouts == 20).all()
    assert (steps.rounds == 1).all() and (steps.pilot_rollouts == 0).all()
    # data order 0..29: the first two steps see only all-wrong prompts, all zero-variance
    assert steps.zero_var_groups.tolist()[:2] == [5, 5]
    assert steps.zero_var_groups.tolist()[2:4] == [0, 0]


def test_grpo_with_a_lag_trains_the_groups_drawn_lag_steps_earlier():
    from sim import make_env

    drawn, trained = [], []
    env = make_env("default", seed=0, pool_size=500, train_batch=8, group_size=4)
    sampler, learner = env.sampler, env.learner

    class Sampler:
        def sample(self, requests, stop=None):
            out = sampler.sample(requests, stop=stop)
            drawn.append(sorted(i for o in out for i in o.rollout_ids.tolist()))
            return out

    class Learner:
        def update(self, groups):
            trained.append(sorted(i for g in groups for i in g.rollout_ids.tolist()))
            return learner.update(groups)

    env.sampler, env.learner = Sampler(), Learner()
    lagged = ab.run(env, ab.make_strategy("grpo", lag=2), ab.RunConfig(steps=6))
    assert trained[:2] == [[], []] and trained[2:] == drawn[:4]  # the last two steps' draws: never trained
    steps = lagged[lagged.step > 0]
    assert steps.prompts_trained.tolist() == [0, 0, 8, 8, 8, 8] and (steps.step_rollouts == 32).all()
    on_policy = ab.run(make_env("default", seed=0, pool_size=500, train_batch=8, group_size=4),
                       ab.make_strategy("grpo"), ab.RunConfig(steps=6))
    assert lagged.cum_rollouts.tolist() == on_policy.cum_rollouts.tolist()  # paid alike
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("grpo", lag=17)  # beyond the real rollout store's retention
