import numpy as np
import pytest

import allocbench as ab
from allocbench.data import CandidateStream
from allocbench.ledger import Ledger
from allocbench.strategy import StepContext
from sim import make_env
from tests.conftest import fixed_env


def one_step(env, strategy, memory, seed=0):
    rng = np.random.default_rng(seed)
    ledger = Ledger(env.sampler)
    candidates = CandidateStream(env.prompt_ids, env.epoch_order, rng)
    groups = strategy.bind(env.train_batch, env.group_size).collect(StepContext(1, env.train_batch, env.group_size, ledger, candidates,
                                          memory, rng))
    return groups, ledger


def test_picks_the_candidates_whose_posterior_is_near_the_target():
    env = fixed_env(np.full(40, 0.5), train_batch=4, group_size=8)  # unshuffled: pool = 0..15
    near = [3, 7, 11, 15]
    posterior = {i: (300.0, 3.0) if i % 2 else (3.0, 300.0) for i in range(16)}  # ~solved / ~0
    posterior.update({i: (200.0, 200.0) for i in near})
    groups, ledger = one_step(env, ab.make_strategy("mopps"), {"posterior": posterior})
    assert env.sampler.calls == [{i: 8 for i in near}]  # one round, n each, only those four
    assert sorted(g.prompt_id for g in groups) == near
    assert ledger.total.pilot_rollouts == 0 and ledger.total.rollouts == 4 * 8


def test_target_moves_the_selection():
    env = fixed_env(np.full(40, 0.5), train_batch=4, group_size=8)
    posterior = {i: (20.0 * (i + 1), 20.0 * (16 - i)) for i in range(16)}  # means rise with i
    one_step(env, ab.make_strategy("mopps", target=0.9), {"posterior": posterior})
    assert set(env.sampler.calls[0]) == {12, 13, 14, 15}  # the four whose means are nearest 0.9


def test_posterior_update_is_discounted_toward_the_prior():
    env = fixed_env(np.full(40, 0.75), train_batch=4, group_size=8)  # 6 of 8 correct
    memory = {"posterior": {3: (41.0, 21.0)}}
    mopps = ab.make_strategy("mopps", pool_factor=1, discount=0.5, prior_alpha=1.0, prior_beta=3.0)
    one_step(env, mopps, memory)  # pool_factor 1: the whole pool 0..3 is rolled out
    assert memory["posterior"][3] == pytest.approx((0.5 * 41 + 0.5 * 1 + 6, 0.5 * 21 + 0.5 * 3 + 2))
    assert memory["posterior"][0] == pytest.approx((0.5 * 1 + 0.5 * 1 + 6, 0.5 * 3 + 0.5 * 3 + 2))


def test_learns_to_train_on_mid_pass_rate_prompts():
    rates = np.tile([0.0, 0.5, 1.0], 30)
    env = fixed_env(rates, train_batch=4, group_size=8, shuffle=True)
    table = ab.run(env, ab.make_strategy("mopps"), ab.RunConfig(steps=60))
    assert (table.step_rollouts[1:] == 4 * 8).all() and (table.rounds[1:] == 1).all()
    later = [rates[g.prompt_id] for groups in env.learner.updates[40:] for g in groups]
    assert np.mean(np.equal(later, 0.5)) > 0.75  # a third of the pool, most of the training


def test_fewer_zero_variance_groups_than_grpo_on_the_sim():
    def zero_var(name):  # after a 20-step warm-up, over 3 seeds
        return sum(ab.run(make_env("default", seed=seed, pool_size=600, eval_size=50), ab.make_strategy(name),
                          ab.RunConfig(steps=80, seed=seed, train_batch=16, group_size=8)).zero_var_groups[20:].sum()
                   for seed in range(3))

    assert zero_var("mopps") < 0.75 * zero_var("grpo")
