import numpy as np
import pytest

import allocbench as ab
from sim import make_env
from tests.conftest import fixed_env


def test_dapo_never_trains_on_a_zero_variance_group():
    table = ab.run(make_env("default", seed=1), ab.make_strategy("dapo"), ab.RunConfig(steps=40))
    steps = table[table.step > 0]
    assert (steps.zero_var_groups == 0).all()
    assert (steps.prompts_trained == 64).all()
    # it generated for 3 x B prompts per round and cut the surplus
    assert (steps.step_rollouts == 3 * 64 * 16 * steps.rounds).all()


def test_dapo_refills_until_the_batch_is_full():
    # one prompt in six is informative: a round of 3B = 12 prompts keeps 2, B = 4 needs 2 rounds
    rates = np.tile([0.5, 0, 0, 1, 1, 0], 20)
    env = fixed_env(rates, train_batch=4, group_size=4)
    table = ab.run(env, ab.make_strategy("dapo"), ab.RunConfig(steps=3))
    assert table.rounds.tolist()[1:] == [2, 2, 2]
    assert all(len(g) == 4 and all(o.std > 0 for o in g) for g in env.learner.updates)


def test_dapo_stops_with_a_clear_error_when_data_is_too_hard():
    env = fixed_env(np.zeros(200), train_batch=2, group_size=4)
    with pytest.raises(ab.DataTooHard, match="max_num_gen_batches=3") as err:
        ab.run(env, ab.make_strategy("dapo", max_num_gen_batches=3), ab.RunConfig(steps=5))
    assert len(env.sampler.calls) == 3  # exactly the allowed rounds were spent
    assert err.value.table.step.tolist() == [0]  # the rows before the failing step are kept


def test_dapo_unbounded_rounds_keep_going():
    rates = np.r_[np.zeros(60), np.full(6, 0.5)]
    env = fixed_env(rates, train_batch=2, group_size=4)
    table = ab.run(env, ab.make_strategy("dapo", max_num_gen_batches=0), ab.RunConfig(steps=1))
    assert table.rounds.iloc[1] == 11  # 10 rounds of 6 all-wrong prompts, then the good ones
