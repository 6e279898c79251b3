import numpy as np
import pytest

from allocbench.protocols import Environment, Outcome


class FixedSampler:
    """Deterministic rewards: prompt i with pass rate p gets round(p * k) ones out of k
    rollouts, so a pilot's accuracy is exactly its pass rate. Records every request."""

    def __init__(self, pass_rates: np.ndarray, tokens_per_rollout: int = 10):
        self.pass_rates = np.asarray(pass_rates, dtype=float)
        self.tokens_per_rollout = tokens_per_rollout
        self.calls: list[dict[int, int]] = []
        self.drawn = 0  # rollouts so far: the next rollout's id

    def sample(self, requests):
        self.calls.append(dict(requests))
        out = []
        for i, k in requests.items():
            ones = int(round(self.pass_rates[i] * k))
            rewards = np.r_[np.ones(ones), np.zeros(k - ones)]
            ids = np.arange(self.drawn, self.drawn + k)
            self.drawn += k
            out.append(Outcome(int(i), rewards, np.full(k, self.tokens_per_rollout), rollout_ids=ids))
        return out


class NullLearner:
    def __init__(self):
        self.updates: list[list[Outcome]] = []

    def update(self, groups):
        self.updates.append(groups)
        return {}


class ConstEvaluator:
    def evaluate(self):
        return {"eval_acc": 0.5}


def fixed_env(pass_rates, train_batch=4, group_size=8, shuffle=False) -> Environment:
    pool = np.arange(len(pass_rates))
    return Environment(
        name="sim", scenario="fixed", sampler=FixedSampler(pass_rates), learner=NullLearner(),
        evaluator=ConstEvaluator(), prompt_ids=pool,
        epoch_order=(lambda rng: rng.permutation(pool)) if shuffle else (lambda rng: pool.copy()),
        train_batch=train_batch, group_size=group_size)


@pytest.fixture
def make_fixed_env():
    return fixed_env
