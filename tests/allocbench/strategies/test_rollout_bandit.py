import numpy as np
import pytest

import allocbench as ab
from allocbench.errors import ConfigError
from allocbench.strategies.rollout_bandit import FEATURES, fit, init_net, predict, scores
from sim import make_env
from tests.conftest import collect_steps, fixed_env

REWARD, AGE = 0, 6  # context columns: the rollout's own reward, its age over max_staleness


def drive(strategy, env, steps, memory=None):
    """The ledger, the memory and [(groups, sampler calls)] per step."""
    memory = {} if memory is None else memory
    log = [(ctx.sampler, (groups, calls)) for ctx, groups, calls in collect_steps(strategy, env, steps, memory=memory)]
    return log[-1][0], memory, [entry for _, entry in log]


def net_preferring(column: int, sign: float, hidden: int = 4) -> dict:
    """A scheduler whose score is sign x tanh(x[column]): it ranks by one context feature."""
    net = init_net(np.random.default_rng(0), hidden)
    net["w1"][:] = 0.0
    net["b1"][:] = 0.0
    net["w1"][column, 0] = 1.0
    net["w2"][0] = sign
    return net


@pytest.mark.parametrize("sign, picked", [(1.0, 1.0), (-1.0, 0.0)])
def test_trains_on_the_k_rollouts_the_scheduler_scores_highest(sign, picked):
    # 4 prompts x 8 rollouts, half correct; K = 0.5 x 32 = 16: exactly the correct (or the wrong)
    # half, and each group keeps its best-scored rollout of the other kind, for an advantage
    env = fixed_env(np.full(4, 0.5), train_batch=4, group_size=8)
    bandit = ab.make_strategy("rollout_bandit", select_fraction=0.5, max_staleness=0, explore=0.0)
    ledger, _, [(groups, calls)] = drive(bandit, env, 1, memory={"net": net_preferring(REWARD, sign)})
    assert calls == [{0: 8, 1: 8, 2: 8, 3: 8}] and ledger.total.rollouts == 32  # grpo's B x n, one round
    assert sorted(g.prompt_id for g in groups) == [0, 1, 2, 3]
    for g in groups:
        assert g.n == 5 and g.reused == 0 and (g.rewards == picked).sum() == 4
        # the picked rollouts are the sampler's own: ids 8i..8i+3 correct, 8i+4..8i+7 wrong
        first = 8 * g.prompt_id + (0 if picked else 4)
        assert set(range(first, first + 4)) < set(g.rollout_ids.tolist())


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reuse_follows_the_scores_of_buffered_rollouts(sign):
    # step 2: 32 fresh rollouts (prompts 4-7) and 32 buffered (prompts 0-3); K = 32. A scheduler
    # that scores age up trains on the buffered ones only, one that scores it down on fresh only
    env = fixed_env(np.full(8, 0.5), train_batch=4, group_size=8)
    bandit = ab.make_strategy("rollout_bandit", max_staleness=1, explore=0.0)
    ledger, _, [_, (groups, _)] = drive(bandit, env, 2, memory={"net": net_preferring(AGE, sign)})
    assert ledger.total.rollouts == 64  # the reused rollouts cost nothing
    reuse = sign > 0
    assert sorted(g.prompt_id for g in groups) == ([0, 1, 2, 3] if reuse else [4, 5, 6, 7])
    assert all(g.n == 8 and g.reused == (8 if reuse else 0) for g in groups)


def test_reuses_buffered_rollouts_at_no_rollout_cost_with_their_ids():
    # the pool is the batch (2 prompts), so step 2's buffer holds the same prompts: K = 2 x 8 takes
    # all 8 fresh and all 8 buffered rollouts, merged per prompt, fresh first
    env = fixed_env(np.array([0.25, 0.75]), train_batch=2, group_size=4)
    bandit = ab.make_strategy("rollout_bandit", select_fraction=2.0, max_staleness=1)
    ledger, _, log = drive(bandit, env, 2)
    (step1, _), (step2, calls2) = log
    assert all(g.reused == 0 and g.n == 4 for g in step1)
    assert calls2 == [{0: 4, 1: 4}] and ledger.total.rollouts == 16  # only fresh rollouts are counted
    ids1 = {g.prompt_id: g.rollout_ids.tolist() for g in step1}
    for g in step2:
        assert g.n == 8 and g.reused == 4
        assert g.rollout_ids[4:].tolist() == ids1[g.prompt_id]  # reused last, with their original ids
        assert min(g.rollout_ids[:4]) >= 8  # this step's fresh ones first
    # through the runner: the table counts the reuse apart from the rollouts spent
    table = ab.run(fixed_env(np.array([0.25, 0.75]), train_batch=2, group_size=4), bandit, ab.RunConfig(steps=3))
    assert table.step_rollouts.iloc[1:].tolist() == [8, 8, 8]
    assert table.reused_rollouts.iloc[1:].tolist() == [0, 8, 8]
    assert table.trained_rollouts.iloc[1:].tolist() == [8, 16, 16]


def test_buffer_stays_within_its_capacity_and_staleness():
    env = fixed_env(np.tile([0.25, 0.5, 0.75], 40), train_batch=4, group_size=8)
    bandit = ab.make_strategy("rollout_bandit", select_fraction=1.5, max_staleness=2, buffer_size=80)
    drawn_at = {}
    for ctx, groups, _ in collect_steps(bandit, env, 12):
        step, memory, ledger = ctx.step, ctx.memory, ctx.sampler
        drawn_at.update(dict.fromkeys(range(32 * (step - 1), 32 * step), step))
        buffer = memory["buffer"]
        assert len(buffer["id"]) == min(32 * step, 80)  # 32 a step, the oldest leave past 80
        assert (step - buffer["step"] <= 2).all() and len(set(buffer["id"].tolist())) == len(buffer["id"])
        ages = [step - drawn_at[i] for g in groups for i in g.rollout_ids[g.n - g.reused:].tolist()]
        assert all(1 <= a <= 2 for a in ages)  # reused rollouts are from earlier steps, never staler
        assert sum(g.n for g in groups) <= 48 + len(groups) and all(g.n >= 2 for g in groups)  # K, contrast
    assert ledger.total.rollouts == 12 * 32


def test_the_arm_reward_is_the_gain_between_consecutive_fresh_batches():
    # batch 1 (prompts 0, 1) has mean 0.25, batch 2 (prompts 2, 3) 0.75: the gain of step 1's
    # selection is +0.5, observed at step 2; then back down: -0.5
    env = fixed_env(np.array([0.25, 0.25, 0.75, 0.75]), train_batch=2, group_size=4)
    _, memory, _ = drive(ab.make_strategy("rollout_bandit"), env, 3)
    assert memory["replay_y"] == [0.5, -0.5]
    assert [x.shape[1] for x in memory["replay_x"]] == [FEATURES, FEATURES]


def test_the_scheduler_learns_which_feature_predicts_the_gain():
    rng = np.random.default_rng(1)
    net = init_net(rng, 16)
    probe = np.zeros((2, FEATURES))
    probe[1, AGE] = 1.0  # two arms alike but for one feature
    assert np.allclose(predict(net, probe), 0.0)  # zero output layer: no preference before any gain
    replay_x, replay_y = [], []
    for _ in range(60):  # each step's arms share a level of that feature; the gain follows it
        level = rng.random()
        x = rng.random((64, FEATURES)) * 0.2
        x[:, AGE] = level + 0.05 * rng.standard_normal(64)
        replay_x.append(x)
        replay_y.append(0.01 * level + 0.001 * rng.standard_normal())
        fit(net, replay_x[-32:], replay_y[-32:], lr=0.1, steps=10)
    low, high = predict(net, probe)
    assert high > low + 0.5  # standardised gains: one unit of the feature is worth most of the spread
    low, high = scores(net, probe, replay_x[-32:], explore=0.1)
    assert high > low


def test_exploration_bonus_shrinks_where_gains_were_observed():
    net = init_net(np.random.default_rng(0), 8)  # f = 0: the score is the bonus alone
    seen, unseen = np.zeros((1, FEATURES)), np.ones((1, FEATURES))
    before = scores(net, np.vstack([seen, unseen]), [], explore=1.0)
    after = scores(net, np.vstack([seen, unseen]), [np.repeat(seen, 16, axis=0)] * 20, explore=1.0)
    assert after[0] < before[0] / 2  # 20 steps observed near `seen`
    assert after[1] > after[0]  # the unexplored context now outranks it


def test_ranges_and_derived_buffer():
    for bad in [dict(select_fraction=0.0), dict(select_fraction=5.0), dict(max_staleness=17),
                dict(max_staleness=-1), dict(buffer_size=0), dict(explore=-0.1), dict(hidden=0),
                dict(lr=0.0), dict(gain_window=0)]:
        with pytest.raises(ConfigError):
            ab.make_strategy("rollout_bandit", **bad)
    bandit = ab.make_strategy("rollout_bandit")
    assert bandit.bind(64, 16).buffer_size == 2 * 64 * 16 and bandit.buffer_size is None
    assert bandit.resolved(8, 4)["buffer_size"] == 64
    with pytest.raises(ConfigError, match="n >= 2"):
        bandit.bind(8, 1)


def test_short_simulated_run_spends_grpo_rollouts_and_reuses_some():
    sim = dict(pool_size=600, eval_size=100, train_batch=16, group_size=8)
    config = ab.RunConfig(steps=30, eval_every=10)
    table = ab.run(make_env("default", seed=0, **sim), ab.make_strategy("rollout_bandit"), config)
    again = ab.run(make_env("default", seed=0, **sim), ab.make_strategy("rollout_bandit"), config)
    steps = table.iloc[1:]
    assert (steps.step_rollouts == 128).all() and (steps.rounds == 1).all()  # B x n fresh, one round
    assert steps.reused_rollouts.sum() > 0
    assert (steps.trained_rollouts <= 128 + steps.prompts_trained).all()  # K, and contrast rollouts
    assert np.isfinite(table.eval_acc.iloc[[0, 10, 20, 30]]).all()
    assert table.drop(columns="wall_s").equals(again.drop(columns="wall_s"))  # a seed fixes the run
