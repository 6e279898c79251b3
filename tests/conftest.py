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


def collect_steps(strategy, env: Environment, steps: int, *, seed: int = 0, memory: dict | None = None,
                  features=None, learn: bool = False):
    """The runner's allocation side (``allocbench.runner.Allocation``), step by step, for tests
    that look inside a strategy: yields ``(ctx, groups, calls)`` per step (``ctx``: the step, the
    strategy's memory, the candidate stream and the ledger as ``sampler``), ``calls`` being the
    step's sampler requests when the sampler records them (FixedSampler). ``learn`` also runs
    the environment's learner and passes its report on as ``ctx.last_update``."""
    from types import SimpleNamespace

    from allocbench.runner import Allocation

    alloc = Allocation(env.sampler, env.prompt_ids, env.epoch_order, strategy, env.train_batch, env.group_size,
                       seed, env=env.name, scenario=env.scenario, features=features)
    if memory is not None:
        alloc.memory = memory
    calls, report = getattr(env.sampler, "calls", []), {}
    for step in range(1, steps + 1):
        before = len(calls)
        groups = alloc.collect(step, report)
        if learn:
            report = env.learner.update(groups)
        yield SimpleNamespace(step=step, memory=alloc.memory, candidates=alloc.candidates, sampler=alloc.ledger), \
            groups, calls[before:]
