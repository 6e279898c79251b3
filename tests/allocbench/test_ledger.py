import numpy as np
import pytest

from allocbench import BudgetExhausted, ConfigError, Ledger
from tests.conftest import FixedSampler


def test_counts_every_rollout_once_and_pilots_separately():
    sampler = FixedSampler(np.full(10, 0.5), tokens_per_rollout=7)
    ledger = Ledger(sampler)
    out = ledger.sample({0: 4, 1: 4}, pilot={2: 2, 3: 2})
    assert set(out) == {0, 1, 2, 3}
    assert len(sampler.calls) == 1  # one round, one sampler call
    assert ledger.total.rollouts == 12 and ledger.total.pilot_rollouts == 4
    assert ledger.total.tokens == 12 * 7 and ledger.total.rounds == 1 and ledger.total.prompts == 4
    ledger.begin_step()
    ledger.sample({5: 3})
    assert (ledger.step.rollouts, ledger.total.rollouts, ledger.total.rounds) == (3, 15, 2)


def test_never_overspends_the_budget():
    sampler = FixedSampler(np.full(10, 0.5))
    ledger = Ledger(sampler, budget=10)
    ledger.sample({0: 6})
    with pytest.raises(BudgetExhausted):
        ledger.sample({1: 5})
    assert ledger.total.rollouts == 6 and len(sampler.calls) == 1  # refused before sampling
    ledger.sample({1: 4})
    assert ledger.remaining == 0


def test_rejects_bad_requests():
    ledger = Ledger(FixedSampler(np.full(10, 0.5)))
    with pytest.raises(ValueError):
        ledger.sample({0: 2}, pilot={0: 2})
    with pytest.raises(ValueError):
        ledger.sample({0: 0})
    with pytest.raises(ConfigError):
        Ledger(FixedSampler(np.ones(2)), budget=0)


def test_pilot_requests_count_against_the_budget():
    # pilots are rollouts too: a round whose main requests fit but whose pilots overspend is
    # refused before sampling, and so is a pilot-only round
    sampler = FixedSampler(np.full(10, 0.5))
    ledger = Ledger(sampler, budget=10)
    with pytest.raises(BudgetExhausted):
        ledger.sample({0: 2}, pilot={1: 5, 2: 5})
    with pytest.raises(BudgetExhausted):
        ledger.sample({}, pilot={1: 11})
    assert ledger.total.rollouts == 0 and not sampler.calls
    ledger.sample({0: 2}, pilot={1: 4, 2: 4})  # exactly the budget: allowed
    assert ledger.remaining == 0 and ledger.total.pilot_rollouts == 8
    with pytest.raises(BudgetExhausted):
        ledger.sample({}, pilot={3: 1})


def test_counts_feature_prompts_and_tokens_apart_from_rollouts():
    from allocbench.protocols import PromptFeatures

    table = np.arange(20.0).reshape(10, 2)
    asked = []
    features = PromptFeatures(lambda ids: (asked.append(ids.tolist()), table[ids])[1],
                              tokens=lambda ids: int(3 * len(ids) + ids.sum()))
    ledger = Ledger(FixedSampler(np.full(10, 0.5)), budget=8, features=features)
    out = ledger.features([4, 1, 4], by="test")
    assert out.tolist() == [[8.0, 9.0], [2.0, 3.0], [8.0, 9.0]] and asked == [[4, 1, 4]]
    assert (ledger.total.feature_prompts, ledger.total.feature_tokens) == (3, 9 + 9)  # a prompt asked twice counts twice
    assert ledger.total.rollouts == 0 and ledger.total.rounds == 0  # features are no rollouts, spend no budget
    ledger.sample({0: 8})
    ledger.begin_step()
    ledger.features(np.array([0, 2]))
    assert (ledger.step.feature_prompts, ledger.step.feature_tokens) == (2, 8)
    assert (ledger.total.feature_prompts, ledger.total.feature_tokens, ledger.total.rollouts) == (5, 26, 8)


def test_plain_feature_functions_cost_no_tokens_and_bad_shapes_are_refused():
    ledger = Ledger(FixedSampler(np.full(10, 0.5)), features=lambda ids: np.ones((len(ids), 3)))
    assert ledger.features([1, 2]).shape == (2, 3)
    assert (ledger.total.feature_prompts, ledger.total.feature_tokens) == (2, 0)
    bad = Ledger(FixedSampler(np.full(10, 0.5)), features=lambda ids: np.ones(len(ids)))
    with pytest.raises(RuntimeError, match="shape"):
        bad.features([1, 2])


def test_features_without_an_environment_that_has_them_name_who_needs_them():
    ledger = Ledger(FixedSampler(np.full(10, 0.5)))
    with pytest.raises(ConfigError, match="pcl needs prompt features"):
        ledger.features([0, 1], by="pcl")
    assert ledger.total.feature_prompts == 0
