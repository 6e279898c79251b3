import numpy as np
import pytest

import allocbench as ab
from sim import make_env
from tests.conftest import fixed_env


def test_trains_only_on_prompts_whose_screening_was_mixed():
    rates = np.tile([0.0, 0.25, 0.5, 1.0, 0.75], 60)  # screening 4 of them: exactly the rate
    env = fixed_env(rates, train_batch=4, group_size=16, shuffle=True)
    table = ab.run(env, ab.make_strategy("speed", n_init=4), ab.RunConfig(steps=20))
    trained = [g for groups in env.learner.updates for g in groups]
    assert {rates[g.prompt_id] for g in trained} == {0.25, 0.5, 0.75}
    for g in trained:
        screen = g.rewards[:4]  # a group is its screening rollouts, then the continuation
        assert g.n == 16 and 0 < screen.mean() < 1
    steps = table[table.step > 0]
    assert (steps.zero_var_groups == 0).all() and (steps.trained_rollouts == 4 * 16).all()
    # screening requests ask for n_init, continuations for n - n_init; the ledger counts the
    # former as pilot rollouts
    screened = sum(k == 4 for call in env.sampler.calls for k in call.values())
    continued = sum(k == 12 for call in env.sampler.calls for k in call.values())
    assert steps.pilot_rollouts.sum() == 4 * screened
    assert steps.step_rollouts.sum() == 4 * screened + 12 * continued
    assert continued == 20 * 4


def test_continuation_rides_along_with_the_next_screening():
    rates = np.tile([0.5, 0.0, 1.0, 0.5], 100)  # half the screened prompts are accepted
    env = fixed_env(rates, train_batch=4, group_size=8)
    table = ab.run(env, ab.make_strategy("speed", n_init=2), ab.RunConfig(steps=10))
    # step 1 screens only, then continues while screening the next batch; afterwards one
    # generation call per step does both
    assert table.rounds.tolist()[1:] == [2] + [1] * 9
    screened_at = {}
    for call_no, call in enumerate(env.sampler.calls):
        continued = [i for i, k in call.items() if k == 6]
        assert all(screened_at[i] == call_no - 1 for i in continued)  # screened one round before
        screened_at.update({i: call_no for i, k in call.items() if k == 2})
        if call_no > 0:
            assert len(continued) == 4 and len(call) == 4 + 8  # B continued + 2B screened


def test_screening_counts_as_pilot_rollouts_on_the_sim():
    config = ab.RunConfig(steps=20, seed=0, train_batch=16, group_size=16)
    table = ab.run(make_env("default", seed=0), ab.make_strategy("speed"), config)
    steps = table[table.step > 0]
    assert (steps.zero_var_groups == 0).all() and (steps.prompts_trained == 16).all()
    assert (steps.pilot_rollouts > 0).all()
    assert steps.pilot_rollouts.sum() < 0.6 * steps.step_rollouts.sum()


def test_stops_with_a_clear_error_when_no_screening_is_mixed():
    env = fixed_env(np.ones(200), train_batch=2, group_size=8)
    with pytest.raises(ab.DataTooHard, match="max_num_gen_batches=3"):
        ab.run(env, ab.make_strategy("speed", max_num_gen_batches=3), ab.RunConfig(steps=2))
    assert len(env.sampler.calls) == 3


def test_screening_as_large_as_the_group_is_refused():
    env = fixed_env(np.full(100, 0.5), train_batch=2, group_size=4)
    with pytest.raises(ab.ConfigError, match="n_init"):
        ab.run(env, ab.make_strategy("speed", n_init=4), ab.RunConfig(steps=1))


@pytest.mark.parametrize("bad", [dict(n_init=0), dict(n_init=2.5), dict(screen_batch=0),
                                 dict(max_num_gen_batches=-1)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("speed", **bad)
