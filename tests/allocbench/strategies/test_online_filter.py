import numpy as np
import pytest

import allocbench as ab
from tests.conftest import fixed_env

# n = 8: FixedSampler's group accuracy is exactly the rate; three of seven are in [0.25, 0.75]
RATES = np.tile([0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0], 40)


class Spy:
    """Wraps a learner and keeps the groups it was given."""

    def __init__(self, learner):
        self.learner, self.updates = learner, []

    def update(self, groups):
        self.updates.append(groups)
        return self.learner.update(groups)


def test_never_trains_on_a_group_outside_its_band():
    env = fixed_env(RATES, train_batch=4, group_size=8)
    table = ab.run(env, ab.make_strategy("online_filter", gen_batch_size=7), ab.RunConfig(steps=10))
    assert all(len(g) == 4 for g in env.learner.updates)
    assert {o.mean for g in env.learner.updates for o in g} == {0.25, 0.5, 0.75}  # bounds included
    # a round of 7 prompts keeps 3: B = 4 needs a second round, whose surplus of 2 is cut
    assert (table.rounds[1:] == 2).all() and (table.step_rollouts[1:] == 2 * 7 * 8).all()


def test_band_on_the_sim():
    from sim import make_env
    env = make_env("default", seed=0)
    env.learner = Spy(env.learner)
    strategy = ab.make_strategy("online_filter", low=0.2, high=0.6)
    table = ab.run(env, strategy, ab.RunConfig(steps=10))
    means = np.array([o.mean for g in env.learner.updates for o in g])
    assert means.min() >= 0.2 and means.max() <= 0.6
    assert (table.prompts_trained[1:] == 64).all() and (table.zero_var_groups[1:] == 0).all()
    assert (table.step_rollouts[1:] == table.rounds[1:] * 128 * 16).all()


def test_stops_with_a_clear_error_when_no_prompt_is_in_the_band():
    env = fixed_env(np.ones(200), train_batch=2, group_size=4)
    with pytest.raises(ab.DataTooHard, match="max_num_gen_batches=3"):
        ab.run(env, ab.make_strategy("online_filter", max_num_gen_batches=3), ab.RunConfig(steps=2))
    assert len(env.sampler.calls) == 3


@pytest.mark.parametrize("bad", [dict(low=-0.1), dict(high=1.5), dict(low=0.8, high=0.2),
                                 dict(gen_batch_size=0), dict(max_num_gen_batches=-1)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("online_filter", **bad)
