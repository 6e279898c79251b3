import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from real import make_env  # noqa: E402
from real.learner import GRPOLearner  # noqa: E402
from real.presets import LearnerConfig  # noqa: E402
from real.rollouts import Rollout  # noqa: E402


def fixed_batch(env, n=4):
    w = env.info["world"]
    outcomes = env.sampler.sample({i: n for i in range(6)})
    rollouts = [r for o in outcomes for r in w.store.resolve(o)]
    advantages = np.where(np.arange(len(rollouts)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return w, rollouts, advantages


def test_a_learner_step_lowers_the_loss_on_a_fixed_batch(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides, **{"learner.lr": 1e-3})
    w, rollouts, advantages = fixed_batch(env)
    before = w.learner.objective(rollouts, advantages)
    for _ in range(3):
        stats = w.learner.step(rollouts, advantages)
    after = w.learner.objective(rollouts, advantages)
    assert after < before - 1e-3
    assert stats["grad_norm"] > 0 and stats["tokens"] == sum(len(r.ids) for r in rollouts)
    assert stats["clip_frac"] > 0  # later steps are off-policy: the clip engages


def test_gradient_accumulation_matches_one_big_batch(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)
    w, rollouts, advantages = fixed_batch(env)
    params = {}
    for rows in (1, 256):
        model = copy.deepcopy(w.policy.model)
        policy = copy.copy(w.policy)
        policy.model = model
        learner = GRPOLearner(policy, LearnerConfig(micro_batch_rows=rows), 1.0, w.store, w.prompt_ids)
        learner.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is the gradient
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        learner.step(rollouts, advantages)
        params[rows] = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    assert params[1].abs().max() > 1e-6
    assert (params[1] - params[256]).abs().max() < 1e-3 * params[256].abs().max()


@pytest.mark.parametrize("extra", [
    {"learner.kl_coef": 0.05},
    {"learner.loss_agg": "seq-mean-token-mean", "learner.mini_batches": 2},
    {"model.gradient_checkpointing": True, "learner.micro_batch_rows": 3},
])
def test_learner_options_run(small_overrides, extra):
    env = make_env("tiny-arith", seed=0, **{**small_overrides, **extra})
    w, rollouts, advantages = fixed_batch(env, n=2)
    stats = w.learner.step(rollouts, advantages)
    assert np.isfinite(stats["loss"]) and stats["grad_norm"] > 0
    if "learner.kl_coef" in extra:
        w.learner.step(rollouts, advantages)
        assert w.learner.step(rollouts, advantages)["kl"] > 0


def test_fresh_rollouts_have_ratio_one_and_stale_ones_use_behaviour_logprobs(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)
    w, rollouts, advantages = fixed_batch(env)
    prompts = [w.prompt_ids(r.prompt_id) for r in rollouts]
    logp, _ = w.learner._logprobs(w.policy.model, prompts, rollouts)
    for lp, r in zip(logp, rollouts):  # generation (KV cache) and training forward agree
        np.testing.assert_allclose(lp.detach().numpy(), r.logprobs, atol=1e-4)
    assert w.learner.step(rollouts, advantages)["ratio_max"] == pytest.approx(1.0)


def test_rollout_store_resolves_subsets_merges_and_reuse():
    from allocbench.protocols import Outcome
    from real.rollouts import RolloutStore

    store = RolloutStore(retain_steps=2)
    make = lambda reward, n, version=0: Rollout(7, np.arange(n), np.zeros(n, np.float32), reward, version, True)  # noqa: E731
    a, b, c = make(1.0, 3), make(0.0, 5), make(0.0, 4)
    store.add([a, b, c])
    # a subset (as reinforce_ada keeps) and its order
    got = store.resolve(Outcome(7, np.array([0.0, 1.0]), np.array([4, 3])))
    assert got[0] is c and got[1] is a
    store.mark_trained([a, b, c])
    d = make(0.0, 4, version=1)
    store.add([d])
    # a fresh rollout plus a cached correct answer reused from the trained ones (as ar3po does)
    got = store.resolve(Outcome(7, np.array([0.0, 1.0]), np.array([4, 3]), reused=1))
    assert got[0] is d and got[1] is a
    with pytest.raises(RuntimeError, match="never generated"):
        store.resolve(Outcome(7, np.array([1.0]), np.array([9])))
    store.evict(version=5)  # all stale: only the newest correct answer stays
    assert len(store) == 1 and store.resolve(Outcome(7, np.array([1.0]), np.array([3])))[0] is a
