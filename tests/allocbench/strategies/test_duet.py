import math

import numpy as np
import pytest

import allocbench as ab
from allocbench.errors import ConfigError
from allocbench.protocols import EarlyStop, Outcome
from allocbench.strategies.duet import NEVER, proportional
from sim import make_env
from tests.conftest import FixedSampler, collect_steps, fixed_env


class StoppableSampler(FixedSampler):
    """FixedSampler that accepts an ``EarlyStop`` (and records it) but stops nothing."""

    def __init__(self, pass_rates):
        super().__init__(pass_rates)
        self.stops: list[EarlyStop] = []

    def sample(self, requests, stop=None):
        self.stops.append(stop)
        return super().sample(requests)


def stoppable_env(rates, train_batch=4, group_size=8):
    env = fixed_env(rates, train_batch=train_batch, group_size=group_size)
    env.sampler = StoppableSampler(rates)
    return env


def test_proportional_split_by_hand_and_within_bounds():
    assert proportional(np.array([1.0, 1.0, 2.0]), 8, 0, 16).tolist() == [2, 2, 4]
    assert proportional(np.full(5, 0.3), 40, 2, 16).tolist() == [8] * 5  # equal scores: grpo's n each
    # bounds bind: the small scores are lifted to low, the large one capped at high, sum kept
    counts = proportional(np.array([1e-6, 1e-6, 1.0, 100.0]), 32, 2, 16)
    assert counts.tolist() == [2, 2, 12, 16] and counts.sum() == 32
    rng = np.random.default_rng(0)
    for _ in range(50):
        score = rng.random(int(rng.integers(1, 20)))
        low, high = int(rng.integers(0, 4)), int(rng.integers(4, 20))
        total = int(rng.integers(low * len(score), high * len(score) + 10))
        counts = proportional(score, total, low, high)
        assert counts.sum() == min(total, high * len(score)) and counts.min() >= low and counts.max() <= high
        order = np.argsort(score)  # a larger score never gets fewer rollouts than a smaller one, +-1 rounding
        assert np.all(np.diff(counts[order]) >= -1)


def test_surrogate_moves_rollouts_to_prompts_of_middling_history_without_screening():
    rates = np.array([0.0, 0.25, 0.5, 1.0] * 2)  # two steps per epoch; epoch 2 sees its history
    env = stoppable_env(rates)
    steps = list(collect_steps(ab.make_strategy("duet"), env, steps=4))
    for ctx, groups, calls in steps:
        spend = ctx.sampler.step
        assert len(calls) == 1 and spend.rounds == 1  # one round, no pilot, no features
        assert spend.pilot_rollouts == 0 and spend.feature_prompts == 0
        assert spend.rollouts == 4 * 8  # grpo's rollouts per step
    first = steps[0][2][0]
    assert list(first.values()) == [8] * 4  # no history yet: equal posteriors, n each
    again = steps[2][2][0]  # epoch 2: prompts 0..3 again, with what their groups showed
    assert again[2] > again[1] > again[0] and again[1] > again[3]
    assert again[2] > 8 > max(again[0], again[3])  # more than grpo's n where the variance is, less where none


def test_every_round_carries_the_early_stop_with_the_weighted_median_horizon():
    env = stoppable_env(np.full(8, 0.5))
    strategy = ab.make_strategy("duet", horizon_factor=2.0, grace_tokens=3, keep_prob=0.1, answer_tail=2)
    list(collect_steps(strategy, env, steps=2))
    first, second = env.sampler.stops
    assert first == EarlyStop(NEVER, 0.1, 2)  # no lengths yet: nothing aborted
    assert second == EarlyStop(2 * 10 + 3, 0.1, 2)  # FixedSampler's rollouts have 10 tokens


def test_horizon_is_the_importance_weighted_median():
    duet = ab.make_strategy("duet", horizon_factor=1.5)
    groups = [Outcome(0, np.zeros(4), np.array([10, 20, 30, 40]), weights=np.array([1.0, 1.0, 0.0, 20.0]))]
    assert duet.horizon(groups) == math.ceil(1.5 * 40)  # weights 1, 1, (0), 20: the median is 40
    groups = [Outcome(0, np.zeros(4), np.array([10, 20, 30, 40]))]
    assert duet.horizon(groups) == math.ceil(1.5 * 20)  # unweighted: the lower median
    assert ab.make_strategy("duet", horizon_factor=float("inf")).horizon(groups) == NEVER


def test_stopped_rollouts_are_charged_their_generated_tokens_in_the_simulator():
    env = make_env("default", seed=0, train_batch=64)
    aborted_seen = kept_seen = 0
    for ctx, groups, _ in collect_steps(ab.make_strategy("duet"), env, steps=4, learn=True):
        horizon = ctx.memory["horizon"]  # the next step's; the abort point of this one is checked below
        tokens = np.concatenate([g.tokens for g in groups])
        weights = np.concatenate([g.importance for g in groups])
        rewards = np.concatenate([g.rewards for g in groups])
        assert ctx.sampler.step.tokens == int(tokens.sum())  # the ledger charges what was generated
        if ctx.step > 1:
            aborted, kept = weights == 0, weights > 1
            assert np.all(tokens[aborted] == abort_at) and np.all(rewards[aborted] == 0)
            assert np.all(tokens[kept] > abort_at) and np.allclose(weights[kept], 1 / 0.05)
            assert np.all(tokens[weights == 1] <= abort_at)
            aborted_seen, kept_seen = aborted_seen + aborted.sum(), kept_seen + kept.sum()
        abort_at = horizon
    assert aborted_seen > 0  # the default horizon (1.5 x the median) does cut the long tail


def test_runner_counts_aborted_rollouts_as_generated_not_trained(tmp_path):
    table = ab.run(make_env("default", seed=0), ab.make_strategy("duet"),
                   ab.RunConfig(steps=4, seed=0, eval_every=4, train_batch=64))
    rows = table[table.step > 0]
    assert (rows.step_rollouts == rows.train_batch * rows.group_size).all()
    assert (rows.trained_rollouts.iloc[1:] < rows.step_rollouts.iloc[1:]).any()  # aborted ones left out
    assert rows.trained_rollouts.iloc[0] == rows.step_rollouts.iloc[0]  # step 1 aborts nothing


@pytest.mark.parametrize("params,match", [({"max_n": 4}, "max_n"), ({"min_n": 9}, "min_n")])
def test_settings_that_cannot_spend_b_times_n_are_refused(params, match):
    with pytest.raises(ConfigError, match=match):
        ab.make_strategy("duet", **params).bind(4, 8)


def test_an_environment_that_cannot_stop_rollouts_is_refused_with_a_clear_error():
    env = fixed_env(np.full(8, 0.5))  # FixedSampler.sample takes no stop
    with pytest.raises(ConfigError, match="early stopping"):
        list(collect_steps(ab.make_strategy("duet"), env, steps=1))
