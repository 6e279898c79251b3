import numpy as np

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
