import numpy as np
import pytest

import allocbench as ab
from allocbench.data import CandidateStream
from allocbench.ledger import Ledger
from allocbench.strategy import StepContext
from sim import make_env
from tests.conftest import fixed_env


def context(env, memory=None, seed=0):
    rng = np.random.default_rng(seed)
    candidates = CandidateStream(env.prompt_ids, env.epoch_order, rng)
    return StepContext(1, env.train_batch, env.group_size, Ledger(env.sampler), candidates,
                       {} if memory is None else memory, rng)


def test_skip_probability_grows_with_the_streak_and_differs_for_easy_and_hard():
    env = fixed_env(np.full(30_000, 0.5))
    greso = ab.make_strategy("greso", min_keep=0.001)
    streaks = np.array([0, 1, 3, -2])  # informative, easy x1, easy x3, hard x2
    streak = {i: int(streaks[i % 4]) for i in range(30_000)}
    explore = {"easy": 0.5, "hard": 0.9}
    ctx = context(env)
    served = []  # what the loader handed out, skipped prompts included
    take = ctx.candidates.take
    ctx.candidates.take = lambda k: served.append(take(k)) or served[-1]
    drawn = greso.draw(ctx, 6000, streak, explore)
    assert len(drawn) == 6000 and len(set(drawn.tolist())) == 6000
    offered = np.bincount(np.concatenate(served) % 4, minlength=4)
    survived = np.bincount(drawn % 4, minlength=4) / offered
    assert survived[0] == 1.0  # no zero-variance history: never skipped
    np.testing.assert_allclose(survived[1:], [0.5, 0.5**3, 0.9**2], atol=0.03)


def test_streak_counts_consecutive_zero_variance_groups_of_one_kind():
    streak = {}
    record = ab.strategy_class("greso").record
    ids = np.array([7, 8])
    record(streak, ids, np.array([True, False]), np.array([False, True]))
    record(streak, ids, np.array([True, False]), np.array([False, True]))
    assert streak == {7: 2, 8: -2}
    record(streak, ids, np.array([False, True]), np.array([False, False]))
    assert streak == {7: 0, 8: 1}  # an informative group resets; a switch of kind restarts at 1


def test_exploration_probabilities_follow_the_target_from_the_second_epoch():
    rates = np.tile([1.0, 1.0, 1.0, 0.5], 30)  # mostly easy, never hard
    env = fixed_env(rates, train_batch=2, group_size=4)
    greso = ab.make_strategy("greso", step_size=0.05)
    rng = np.random.default_rng(0)
    ledger, memory = Ledger(env.sampler), {}
    candidates = CandidateStream(env.prompt_ids, env.epoch_order, rng)
    history = []
    for step in range(1, 60):
        greso.bind(2, 4).collect(StepContext(step, 2, 4, ledger, candidates, memory, rng))
        history.append((candidates.epoch, dict(memory["explore"])))
    first = [e for epoch, e in history if epoch == 1]
    assert all(e == {"easy": 0.5, "hard": 0.5} for e in first)  # no adjustment in epoch 1
    later = [e for epoch, e in history if epoch >= 3]
    # easy share far above 1/3 x 25%: p_easy falls to its floor, then hovers where skipping
    # brings the rolled-out easy share down to the target
    assert min(e["easy"] for e in later) == pytest.approx(0.05)
    assert max(e["easy"] for e in later) <= 0.2
    assert all(e["hard"] == pytest.approx(0.95) for e in later)  # no hard groups: explore more


def test_greso_spends_fewer_rollouts_than_dapo_on_an_easy_scenario():
    config = ab.RunConfig(steps=60, seed=0, train_batch=8, group_size=8)
    # dapo with greso's first-round size (1.5 x B): the pre-rollout skip is the only difference
    tables = {name: ab.run(make_env("easy", seed=0, pool_size=400, eval_size=50),
                           ab.make_strategy(name, gen_batch_size=12), config)
              for name in ("dapo", "greso")}
    greso, dapo = tables["greso"], tables["dapo"]
    assert (greso.prompts_trained[1:] == 8).all() and (greso.zero_var_groups[1:] == 0).all()
    assert greso.epoch.max() >= 3
    assert greso.cum_rollouts.iloc[-1] < 0.8 * dapo.cum_rollouts.iloc[-1]


@pytest.mark.parametrize("bad", [dict(explore_easy=0.0), dict(explore_hard=1.5),
                                 dict(target_zero_var=1.0), dict(step_size=0.0),
                                 dict(min_keep=0.0), dict(oversample=0.5),
                                 dict(explore_min=0.9, explore_max=0.5),
                                 dict(gen_batch_size=0), dict(max_num_gen_batches=-1)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("greso", **bad)
