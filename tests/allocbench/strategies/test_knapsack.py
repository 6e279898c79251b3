import itertools

import numpy as np
import pytest

import allocbench as ab
from allocbench.data import CandidateStream
from allocbench.ledger import Ledger
from allocbench.strategy import StepContext
from sim import make_env
from tests.conftest import fixed_env


def one_step(env, strategy, memory):
    rng = np.random.default_rng(0)
    ctx = StepContext(1, env.train_batch, env.group_size, Ledger(env.sampler),
                      CandidateStream(env.prompt_ids, env.epoch_order, rng), memory, rng)
    return strategy.bind(env.train_batch, env.group_size).collect(ctx)


def value(strategy, p, counts):
    p, counts = np.asarray(p), np.asarray(counts)
    gain = {"p(1-p)^2": p * (1 - p) ** 2, "p(1-p)": p * (1 - p)}[strategy.gain]
    return float(np.sum((1 - p**counts - (1 - p) ** counts) * gain))


def test_moves_rollouts_from_settled_prompts_to_uncertain_ones_within_the_budget():
    # last results (successes of 16): solved, unsolved, and three in between
    last = {0: (16.0, 16), 1: (0.0, 16), 2: (8.0, 16), 3: (4.0, 16), 4: (12.0, 16)}
    env = fixed_env(np.full(10, 0.5), train_batch=5, group_size=8)  # unshuffled: takes 0..4
    knapsack = ab.make_strategy("knapsack", min_n=2, max_n=32)
    groups = one_step(env, knapsack, {"last": dict(last)})
    (counts,) = env.sampler.calls  # one generation round
    assert sum(counts.values()) == 5 * 8  # exactly the GRPO budget B x n, redistributed
    assert min(counts.values()) >= 2 and max(counts.values()) <= 32
    assert counts[0] == 2  # solved: the floor
    # p-hat .26 and .74 need many rollouts to show both outcomes: more than the uniform 8;
    # p-hat .5 shows both with few; p(1-p)^2 favours the harder side of the two
    assert counts[3] > counts[4] > 8 >= counts[2] > counts[0]
    assert counts[1] > counts[0]  # never solved in 16: a few more than the floor, unlike solved
    assert [g.n for g in groups] == [counts[i] for i in range(5)]


def test_greedy_allocation_is_the_exact_knapsack_optimum():
    for gain in ("p(1-p)^2", "p(1-p)"):
        knapsack = ab.make_strategy("knapsack", min_n=1, max_n=9, gain=gain)
        p = np.array([0.05, 0.3, 0.6, 0.9])
        counts = knapsack.allocate(p, budget=16, max_n=9)
        assert counts.sum() == 16
        best = max(value(knapsack, p, c) for c in itertools.product(range(1, 10), repeat=4)
                   if sum(c) == 16)
        assert value(knapsack, p, counts) == pytest.approx(best)


def test_unknown_prompts_share_the_budget_evenly_and_max_n_caps_it():
    env = fixed_env(np.full(20, 0.5), train_batch=4, group_size=8)
    one_step(env, ab.make_strategy("knapsack"), {})
    assert list(env.sampler.calls[0].values()) == [8, 8, 8, 8]  # all at the prior: as GRPO
    p = np.array([0.0, 1.0, 0.5, 0.5])
    counts = ab.make_strategy("knapsack", min_n=2, max_n=5).allocate(p, budget=32, max_n=5)
    assert counts.tolist() == [2, 2, 5, 5]  # p = 0 or 1 has no value; the cap leaves budget unspent


def test_one_round_per_step_never_over_budget_on_the_sim():
    config = ab.RunConfig(steps=60, seed=0, train_batch=16, group_size=8)
    env = make_env("default", seed=0, pool_size=320, eval_size=50)
    calls, sample = [], env.sampler.sample
    env.sampler.sample = lambda requests: calls.append(dict(requests)) or sample(requests)
    table = ab.run(env, ab.make_strategy("knapsack"), config)
    steps = table[table.step > 0]
    assert (steps.rounds == 1).all() and (steps.step_rollouts <= 16 * 8).all()
    assert (steps.pilot_rollouts == 0).all() and (steps.prompts_trained == 16).all()
    later = (steps.epoch >= 2).to_numpy()
    # the first epoch knows no prompt: uniform n; later, unequal shares of the same budget
    assert all(set(c.values()) == {8} for c, late in zip(calls, later) if not late)
    assert max(max(c.values()) for c in calls) > 16 and min(min(c.values()) for c in calls) == 2
    # more of the budget lands in groups with reward variance than under grpo
    grpo = ab.run(make_env("default", seed=0, pool_size=320, eval_size=50),
                  ab.make_strategy("grpo"), config)
    assert steps.learn_signal[later].mean() > 1.08 * grpo.learn_signal[1:][later].mean()


def test_min_n_above_the_group_size_is_refused():
    env = fixed_env(np.full(20, 0.5), train_batch=4, group_size=4)
    with pytest.raises(ab.ConfigError, match="min_n"):
        ab.run(env, ab.make_strategy("knapsack", min_n=5), ab.RunConfig(steps=1))


@pytest.mark.parametrize("bad", [dict(min_n=0), dict(min_n=4, max_n=3), dict(max_n=0),
                                 dict(gain="p"), dict(prior_p=0.0), dict(prior_p=1.0),
                                 dict(prior_strength=-1.0)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("knapsack", **bad)
