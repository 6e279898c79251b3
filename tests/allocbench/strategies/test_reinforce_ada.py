import numpy as np
import pytest

import allocbench as ab
from allocbench.strategies.reinforce_ada import downsample
from tests.conftest import fixed_env

# n = 8, rounds of 8: FixedSampler gives round(8 p) correct answers per round
RATES = np.array([0.5, 0.25, 0.125, 0.0, 1.0])


def rounds_of(env):
    """The prompts asked in each sampler call of the run."""
    return [set(call) for call in env.sampler.calls]


def test_balanced_stops_a_prompt_once_it_has_half_correct_and_half_wrong():
    env = fixed_env(RATES, train_batch=5, group_size=8)
    table = ab.run(env, ab.make_strategy("reinforce_ada"), ab.RunConfig(steps=1))
    # 0.5: 4 + 4 after one round; 0.25: 2 correct per round, 4 after two; 0.125 balances only
    # in its 4th round, 0 and 1 never: both stop at the cap of 4 x 8 = 32 rollouts
    assert rounds_of(env) == [{0, 1, 2, 3, 4}, {1, 2, 3, 4}, {2, 3, 4}, {2, 3, 4}]
    assert table.rounds.iloc[1] == 4  # one sampler call per round, for all active prompts
    assert table.step_rollouts.iloc[1] == 8 * (1 + 2 + 4 + 4 + 4)
    (groups,) = env.learner.updates
    assert [g.n for g in groups] == [8] * 5  # trained on exactly n, the rest was only counted
    assert table.trained_rollouts.iloc[1] == 5 * 8
    correct = [int(g.rewards.sum()) for g in groups]
    assert correct == [4, 4, 4, 0, 8]  # balanced where the pool allows it


def test_pos_stops_a_prompt_at_its_first_correct_answer():
    env = fixed_env(RATES, train_batch=5, group_size=8)
    ab.run(env, ab.make_strategy("reinforce_ada", exit_rule="pos"), ab.RunConfig(steps=1))
    # every prompt with a correct answer leaves after one round; the all-wrong one hits the cap
    assert rounds_of(env) == [{0, 1, 2, 3, 4}, {3}, {3}, {3}]
    (groups,) = env.learner.updates
    assert [int(g.rewards.sum()) for g in groups] == [4, 2, 1, 0, 8] and all(g.n == 8 for g in groups)


def test_the_cap_bounds_rollouts_per_prompt_and_small_rounds_still_fill_the_group():
    env = fixed_env(np.zeros(3), train_batch=3, group_size=8)
    table = ab.run(env, ab.make_strategy("reinforce_ada", round_n=3, max_rollouts=10), ab.RunConfig(steps=1))
    assert [sorted(set(c.values())) for c in env.sampler.calls] == [[3], [3], [3], [1]]  # 3+3+3+1
    assert table.step_rollouts.iloc[1] == 3 * 10
    env = fixed_env(np.full(3, 0.5), train_batch=3, group_size=8)
    ab.run(env, ab.make_strategy("reinforce_ada", exit_rule="pos", round_n=2), ab.RunConfig(steps=1))
    assert len(env.sampler.calls) == 4  # a correct answer at once, but n = 8 rollouts are needed
    assert all(g.n == 8 for g in env.learner.updates[0])


def test_downsample_keeps_the_earliest_of_each_kind():
    pool = ab.Outcome(7, np.array([0, 1, 0, 0, 1, 1, 0, 1.0]), np.arange(8), rollout_ids=np.arange(8) + 100)
    g = downsample(pool, 4)
    assert g.tokens.tolist() == [0, 1, 2, 4] and g.rewards.sum() == 2
    assert g.rollout_ids.tolist() == [100, 101, 102, 104]  # the kept rollouts' ids
    g = downsample(ab.Outcome(7, np.array([1, 0, 0, 0, 0, 0.0]), np.arange(6)), 4)
    assert g.tokens.tolist() == [0, 1, 2, 3]  # only one correct: topped up with wrong ones


def test_runs_on_the_sim_with_fewer_zero_variance_groups_than_grpo():
    from sim import make_env
    table = ab.run(make_env("default", seed=0), ab.make_strategy("reinforce_ada"), ab.RunConfig(steps=5))
    grpo = ab.run(make_env("default", seed=0), ab.make_strategy("grpo"), ab.RunConfig(steps=5))
    assert (table.trained_rollouts[1:] == 64 * 16).all()
    assert (table.step_rollouts[1:] > 64 * 16).all()  # the hard prompts were sampled deeper
    assert table.zero_var_groups[1:].sum() < grpo.zero_var_groups[1:].sum()


@pytest.mark.parametrize("bad", [dict(exit_rule="all"), dict(round_n=0), dict(max_rollouts=0),
                                 dict(round_n=1.5)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("reinforce_ada", **bad)


def test_a_cap_below_the_group_size_is_refused():
    env = fixed_env(RATES, train_batch=5, group_size=8)
    with pytest.raises(ab.ConfigError, match="below the group size"):
        ab.run(env, ab.make_strategy("reinforce_ada", max_rollouts=4), ab.RunConfig(steps=1))
