import copy
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import allocbench as ab  # noqa: E402
from allocbench.protocols import Outcome  # noqa: E402
from real import make_env  # noqa: E402
from real.learner import LOSS_AGGS, GRPOLearner, group_advantages  # noqa: E402
from real.presets import LearnerConfig  # noqa: E402
from real.rollouts import Rollout, RolloutStore  # noqa: E402


def fixed_batch(env, n=4):
    w = env.info["world"]
    outcomes = env.sampler.sample({i: n for i in range(6)})
    rollouts = [r for o in outcomes for r in w.store.get(o.rollout_ids)]
    advantages = np.where(np.arange(len(rollouts)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return w, rollouts, advantages


def test_a_learner_step_lowers_the_loss_on_a_fixed_batch(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides, **{"learner.lr": 1e-4})
    w, rollouts, advantages = fixed_batch(env)
    before = w.learner.objective(rollouts, advantages)
    for _ in range(3):
        stats = w.learner.step(rollouts, advantages)
    after = w.learner.objective(rollouts, advantages)
    assert after < before - 1e-3
    assert stats["grad_norm"] > 0 and stats["tokens"] == sum(len(r.ids) for r in rollouts)
    # every update takes the old log-probs anew (old_logprobs = "recompute"): no clipping at
    # its first mini-batch, however stale the rollouts are
    assert stats["clip_frac"] == 0 and stats["ratio_max"] == pytest.approx(1.0, abs=1e-4)


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


def test_generation_and_training_logprobs_agree_and_fresh_rollouts_have_ratio_one(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)
    w, rollouts, advantages = fixed_batch(env)
    prompts = [w.prompt_ids(r.prompt_id) for r in rollouts]
    logp, _ = w.learner._logprobs(w.policy.model, prompts, rollouts)
    for lp, r in zip(logp, rollouts):  # generation (KV cache) and training forward agree
        np.testing.assert_allclose(lp.detach().numpy(), r.logprobs, atol=1e-4)
    assert w.learner.step(rollouts, advantages)["ratio_max"] == pytest.approx(1.0)




# ---------------------------------------------------------------- the rollout store (ids, retention)

def _rollout(prompt=7, reward=0.0, n=3):
    return Rollout(prompt, np.arange(n), np.zeros(n, np.float32), reward, 0, True)


def test_rollout_store_gets_rollouts_by_id_subsets_merges_and_reuse():
    store = RolloutStore(retain_steps=2)
    a, b, c = _rollout(reward=1.0), _rollout(n=5), _rollout(n=4)
    ids = store.add([a, b, c])
    assert ids.tolist() == [0, 1, 2] and (a.id, b.id, c.id) == (0, 1, 2) and a.step == 0
    # a subset in another order (as reinforce_ada keeps), a merge, a reused answer named twice
    assert store.get(np.array([2, 0])) == [c, a]
    d = _rollout(n=4)
    store.end_step()
    assert store.add([d]).tolist() == [3] and d.step == 1
    assert store.get([3, 1, 0]) == [d, b, a]  # a fresh rollout, an older one, a cached answer
    with pytest.raises(RuntimeError, match="without an id"):
        store.get(Outcome(7, np.array([1.0]), np.array([3])).rollout_ids)  # a hand-built outcome
    with pytest.raises(RuntimeError, match="never generated"):
        store.get([9])


def test_rollout_store_keeps_rollouts_for_retain_steps_training_steps_and_the_newest_correct_answer():
    store = RolloutStore(retain_steps=2)
    old_correct, old_wrong = _rollout(reward=1.0), _rollout()
    store.add([old_correct, old_wrong])  # drawn during step 1
    for _ in range(3):  # steps 1, 2 and 3 can still use them: a staleness of 2
        assert store.get([old_correct.id, old_wrong.id]) == [old_correct, old_wrong]
        store.end_step()
    with pytest.raises(RuntimeError, match="retain_steps=2"):
        store.get([old_wrong.id])
    assert store.get([old_correct.id]) == [old_correct]  # a prompt's newest correct answer stays (ar3po)
    other = _rollout(prompt=8, reward=1.0)
    store.add([other])
    newer = _rollout(reward=1.0)
    store.add([newer])  # replaces prompt 7's kept answer, which is past the horizon: dropped
    store.end_step()
    assert len(store) == 2 and store.get([newer.id, other.id]) == [newer, other]
    for _ in range(5):
        store.end_step()
    assert len(store) == 2  # both are their prompt's newest correct answer
    # a checkpoint continues exactly
    copy_ = RolloutStore()
    copy_.load_state_dict(copy.deepcopy(store.state_dict()))
    assert copy_.step == store.step and copy_.add([_rollout()]).tolist() == [4] and len(copy_) == 3


def test_the_default_retention_covers_every_registered_strategys_staleness():
    import dataclasses

    from allocbench.strategy import strategy_class, strategy_names

    retain = LearnerConfig().retain_steps
    bounds = {}
    for name in strategy_names():
        for f in dataclasses.fields(strategy_class(name)):
            if "stale" in f.name:
                m = f.metadata
                declared = [x for x in (m.get("high"), (m.get("search") or (None, None))[1], f.default)
                            if isinstance(x, (int, float)) and not isinstance(x, bool)]
                bounds[f"{name}.{f.name}"] = max(declared)
    assert bounds.get("pilot_commit.max_staleness") == 8
    assert all(b <= retain for b in bounds.values()), (bounds, retain)


def _strategies_at_their_stalest():
    from allocbench.strategy import strategy_names

    return [(name, {}) for name in strategy_names()] + [("pilot_commit", {"max_staleness": 8})]


@pytest.mark.parametrize("name, settings", _strategies_at_their_stalest())
def test_no_registered_strategy_trains_rollouts_older_than_the_default_retention(name, settings):
    """On the simulator (its rollout ids are a running count): the oldest rollout each strategy
    trains on, reused cached answers aside (the store keeps those), is within the store's
    default horizon; strategies without a declared staleness bound (SPEED's queue) included."""
    from allocbench import RunConfig, make_strategy, run
    from sim import make_env as sim_env

    env = sim_env("default", seed=0)
    drawn_at, ages, sampler, learner = {}, [0], env.sampler, env.learner

    class Sampler:
        def sample(self, requests, stop=None):
            outcomes = sampler.sample(requests, stop=stop)
            for o in outcomes:
                drawn_at.update(dict.fromkeys(o.rollout_ids.tolist(), len(ages) - 1))
            return outcomes

    class Learner:
        def update(self, groups):
            step = len(ages) - 1
            ages.append(max([step - drawn_at[i] for g in groups for i in g.rollout_ids[: g.n - g.reused].tolist()],
                            default=0))
            return learner.update(groups)

    env.sampler, env.learner = Sampler(), Learner()
    run(env, make_strategy(name, **settings), RunConfig(steps=60))
    assert max(ages) <= LearnerConfig().retain_steps
    if settings:
        assert max(ages) == settings["max_staleness"]  # the bound is reached: the check bites


def test_pilot_commit_with_max_staleness_8_and_4_mini_batches_commits_old_pilots(small_overrides):
    """Defect 6: the store once kept rollouts 16 optimizer versions, 4 steps at mini_batches = 4,
    so a pilot committed 5+ steps after it was drawn was gone. Retention counts steps now."""
    from allocbench import RunConfig, make_strategy, run

    overrides = {**small_overrides, "data.train_size": 400, "learner.mini_batches": 4, "run.train_batch": 2}
    # every pilot kept (band [0, 1]); 8 fresh prompts a round and 2 commits a step: a long queue
    strategy = make_strategy("pilot_commit", max_staleness=8, lower=0.0, upper=0.0, pilot_n=2,
                             gen_batch_size=8, commit_order="random")
    env = make_env("tiny-arith", seed=0, **overrides)
    store = env.info["world"].store
    ages = []
    update = env.learner.update

    def spy(groups):
        ages.extend(store.step - r.step for g in groups for r in store.get(g.rollout_ids))
        return update(groups)

    env.learner.update = spy
    table = run(env, strategy, RunConfig(steps=12, eval_every=12))
    assert np.isfinite(table.learn_loss.iloc[1:]).all()
    assert 4 < max(ages) <= 8  # pilots committed more than 4 (and at most 8) steps after drawing
    # the same run with the store's horizon below the staleness stops with a clear error
    env = make_env("tiny-arith", seed=0, **{**overrides, "learner.retain_steps": 4})
    with pytest.raises(RuntimeError, match="raise learner.retain_steps"):
        run(env, strategy, RunConfig(steps=12, eval_every=12))


# ---------------------------------------------------------------- the objective, worked out by hand

def groups_with_rewards(env, rewards: list[list[float]]) -> list[Outcome]:
    """Group k: real completions of prompt k, stored again with the rewards ``rewards[k]``
    (the verifier's verdicts replaced), as the sampler would have returned them."""
    w = env.info["world"]
    outcomes = env.sampler.sample({k: len(r) for k, r in enumerate(rewards)})
    groups = []
    for o, rs in zip(outcomes, rewards):
        drawn = w.store.get(o.rollout_ids)
        ids = w.store.add([Rollout(o.prompt_id, r.ids, r.logprobs, float(x), r.version, r.finished)
                           for r, x in zip(drawn, rs)])
        groups.append(Outcome(o.prompt_id, np.array(rs, dtype=np.float64), o.tokens, rollout_ids=ids))
    return groups


REWARDS = [[1, 0, 0, 0], [1, 1, 0], [1], [0, 0, 0, 0]]
S3, S2 = np.sqrt(3), np.sqrt(2)
# mean 1/4, population std sqrt(3)/4: (1 - 1/4) / (sqrt(3)/4) = sqrt(3), (0 - 1/4) / (sqrt(3)/4) = -1/sqrt(3);
# mean 2/3, std sqrt(2)/3: 1/sqrt(2) and -sqrt(2); one rollout and all-equal groups: 0
BY_STD = [S3, -1 / S3, -1 / S3, -1 / S3, 1 / S2, 1 / S2, -S2, 0, 0, 0, 0, 0]
NO_STD = [0.75, -0.25, -0.25, -0.25, 1 / 3, 1 / 3, -2 / 3, 0, 0, 0, 0, 0]


def test_group_advantages_by_hand():
    got = np.concatenate([group_advantages(np.array(r, float)) for r in REWARDS])
    np.testing.assert_allclose(got, BY_STD, rtol=1e-5, atol=1e-7)
    got = np.concatenate([group_advantages(np.array(r, float), norm_by_std=False) for r in REWARDS])
    np.testing.assert_allclose(got, NO_STD, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", [True, False])
def test_update_trains_on_the_groups_rollouts_with_hand_computed_advantages(small_overrides, norm):
    env = make_env("tiny-arith", seed=0, **small_overrides, **{"learner.norm_adv_by_std": norm})
    learner = env.info["world"].learner
    groups = groups_with_rewards(env, REWARDS)
    seen = {}
    step = learner.step

    def spy(rollouts, advantages):
        seen.update(rollouts=rollouts, advantages=advantages.copy())
        return step(rollouts, advantages)

    learner.step = spy
    stats = learner.update(groups)
    assert [r.id for r in seen["rollouts"]] == [i for g in groups for i in g.rollout_ids.tolist()]
    np.testing.assert_allclose(seen["advantages"], BY_STD if norm else NO_STD, rtol=1e-5, atol=1e-6)
    assert stats["zero_adv_share"] == pytest.approx(5 / 12) and stats["rollouts"] == 12


def test_update_refuses_outcomes_without_ids_or_with_other_rewards(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)
    (g,) = groups_with_rewards(env, [[1, 0]])
    with pytest.raises(RuntimeError, match="without an id"):
        env.learner.update([Outcome(g.prompt_id, g.rewards, g.tokens)])
    with pytest.raises(RuntimeError, match="other rewards"):
        env.learner.update([Outcome(g.prompt_id, g.rewards[::-1].copy(), g.tokens, rollout_ids=g.rollout_ids)])


def _varied_batch(env):
    """8 rollouts of distinct lengths 1..4 (completions cut short) and advantages of both signs."""
    w = env.info["world"]
    outcomes = env.sampler.sample({i: 2 for i in range(4)})
    rollouts = [r for o in outcomes for r in w.store.get(o.rollout_ids)]
    for k, r in enumerate(rollouts):
        cut = min(len(r.ids), 1 + k % 4)
        r.ids, r.logprobs = r.ids[:cut], r.logprobs[:cut]
    lengths = np.array([len(r.ids) for r in rollouts], dtype=np.float64)
    assert len(set(lengths.tolist())) > 1
    return w, rollouts, np.array([1.5, -0.5, 0.0, 2.0, -1.0, 0.5, -2.0, 1.0], dtype=np.float32), lengths


def test_loss_aggregations_by_hand_at_ratio_one(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)
    w, rollouts, adv, L = _varied_batch(env)
    a = adv.astype(np.float64)
    # at ratio 1 (the first mini-batch) every token's loss is -A
    expected = {"token-mean": -(a * L).sum() / L.sum(),  # over all tokens of the batch
                "seq-mean-token-mean": -a.mean(),  # each sequence's token mean, then their mean
                "seq-mean-token-sum": -(a * L).mean()}  # each sequence's token sum, then their mean
    for agg in LOSS_AGGS:
        w.learner.cfg = replace(w.learner.cfg, loss_agg=agg, micro_batch_rows=3)  # across micro-batches
        stats = w.learner.step(rollouts, adv)
        assert stats["pg_loss"] == pytest.approx(expected[agg], rel=1e-5), agg
        assert stats["clip_frac"] == 0 and stats["ratio_max"] == pytest.approx(1.0, abs=1e-4)


def test_clipped_objective_by_hand_with_behaviour_logprobs(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides, **{"learner.old_logprobs": "behaviour"})
    w, rollouts, adv, L = _varied_batch(env)
    learner = w.learner
    ratio = np.where(adv > 0, 1.25, np.where(adv < 0, 0.75, 1.0))
    with torch.no_grad():
        now, _ = learner._logprobs(w.policy.model, [w.prompt_ids(r.prompt_id) for r in rollouts], rollouts)
    for r, lp, q in zip(rollouts, now, ratio):  # drawn by older weights: ratio q on every token
        r.logprobs = (lp.double() - np.log(q)).float().numpy()
        r.version = learner.version - 1
    a = adv.astype(np.float64)
    # eps_low = 0.2, eps_high = 0.28: A > 0 at ratio 1.25 (< 1.28) is not clipped, -1.25 A a token;
    # A < 0 at ratio 0.75 (< 0.8) is clipped to 0.8: max(-0.75 A, -0.8 A) = -0.8 A a token
    per_token = np.where(a > 0, -1.25 * a, -0.8 * a)
    stats = learner.step(rollouts, adv)
    assert stats["pg_loss"] == pytest.approx((per_token * L).sum() / L.sum(), rel=1e-4)
    assert stats["clip_frac"] == pytest.approx(L[a < 0].sum() / L.sum(), rel=1e-6)
    assert stats["ratio_max"] == pytest.approx(1.25, rel=1e-4) and stats["stale_share"] == 1.0


def test_stale_rollouts_have_ratio_one_at_the_first_mini_batch_unless_behaviour(small_overrides):
    """Defect 5: stale rows (a Pilot-Commit group's pilots) are no longer clipped as off-policy
    by default; ``old_logprobs = "behaviour"`` keeps that variant."""
    stats = {}
    for mode in ("recompute", "behaviour"):
        env = make_env("tiny-arith", seed=0, **small_overrides, **{"learner.lr": 1e-2, "learner.old_logprobs": mode})
        stale = groups_with_rewards(env, [[1, 0, 0, 0], [1, 1, 0, 0]])  # drawn now ...
        moved = env.learner.update(groups_with_rewards(env, [[0, 1, 0, 1], [1, 0, 0, 0]]))  # ... weights move
        assert moved["grad_norm"] > 0 and moved["stale_share"] == 0
        stats[mode] = env.learner.update(stale)
        assert stats[mode]["stale_share"] == 1.0
    assert stats["recompute"]["clip_frac"] == 0
    assert stats["recompute"]["ratio_max"] == pytest.approx(1.0, abs=1e-4)
    assert stats["behaviour"]["clip_frac"] > 0 and stats["behaviour"]["ratio_max"] > 1.01


def test_a_few_updates_make_the_rewarded_completion_more_likely(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)  # the preset's lr, 1e-4
    w = env.info["world"]
    (group,) = groups_with_rewards(env, [[1, 0, 0, 0]])
    rollouts = w.store.get(group.rollout_ids)
    assert all(not np.array_equal(rollouts[0].ids, r.ids) for r in rollouts[1:])

    def sequence_logprobs():
        with torch.no_grad():
            lp, _ = w.learner._logprobs(w.policy.model, [w.prompt_ids(r.prompt_id) for r in rollouts], rollouts)
        return np.array([float(x.sum()) for x in lp])

    before = sequence_logprobs()
    for _ in range(3):
        env.learner.update([group])
    after = sequence_logprobs()
    assert after[0] > before[0] + 0.5  # the rewarded completion: more likely
    assert after[1:].mean() < before[1:].mean() - 0.2  # the others: less


def test_noise_scale_estimates_are_unbiased_for_known_per_sample_gradients():
    """Per-sample gradients mu + eps with cov sigma^2 I (dim d): over many batches the two
    estimates average to |mu|^2 and tr(Sigma) = d sigma^2 (McCandlish et al.'s estimators)."""
    from real.learner import NoiseScale

    rng = np.random.default_rng(0)
    d, B, parts, sigma = 20, 64, 4, 0.5
    mu = rng.normal(size=d) * 0.1
    model = torch.nn.Linear(d, 1, bias=False)
    grad_sq, trace = [], []
    for _ in range(2000):
        samples = mu + sigma * rng.normal(size=(B, d))
        noise = NoiseScale(model, B)
        acc = np.zeros(d)
        for part in np.array_split(samples, parts):
            acc += part.sum(0) / B  # the batch-mean loss's gradient, accumulated part by part
            model.weight.grad = torch.as_tensor(acc[None, :], dtype=torch.float32)
            noise.add_rows(len(part))
            noise.end_part()
        est = noise.estimate()
        grad_sq.append(est["noise_grad_sq"])
        trace.append(est["noise_trace"])
    assert np.mean(grad_sq) == pytest.approx(float(mu @ mu), rel=0.1)
    assert np.mean(trace) == pytest.approx(d * sigma**2, rel=0.05)


def test_updates_report_the_noise_scale_and_informative_samples(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides)
    table = ab.run(env, ab.make_strategy("grpo"), ab.RunConfig(steps=3, seed=0, eval_every=3))
    steps = table[table.step > 0]
    assert np.isfinite(steps.learn_noise_grad_sq).all() and np.isfinite(steps.learn_noise_trace).all()
    # rollouts with non-zero advantage: every rollout of a group whose rewards differ
    informative = steps.trained_rollouts - steps.zero_var_groups * env.group_size
    assert (steps.learn_informative_samples == informative).all()


def test_updates_report_the_learning_rate_of_their_last_optimizer_step_after_the_warm_up(small_overrides):
    env = make_env("tiny-arith", seed=0, **small_overrides,
                   **{"learner.lr": 3e-4, "learner.lr_warmup_steps": 4, "learner.mini_batches": 2})
    w, rollouts, advantages = fixed_batch(env, n=2)
    # two optimizer steps per update, the warm-up over four: 2/4, then 4/4, then the full lr
    reported = [w.learner.step(rollouts, advantages)["lr"] for _ in range(3)]
    assert reported == pytest.approx([1.5e-4, 3e-4, 3e-4])
    assert all(g["lr"] == pytest.approx(3e-4) for g in w.learner.optimizer.param_groups)
    table = ab.run(env, ab.make_strategy("grpo"), ab.RunConfig(steps=1, seed=0, eval_every=1))
    assert table.loc[table.step == 1, "learn_lr"].tolist() == pytest.approx([3e-4])
