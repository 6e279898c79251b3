"""Early stopping of rollouts in the real tier (allocbench.protocols.EarlyStop, DUET): the answer
scan, the torch backend's stops and aborts, the sampler's rewards and weights, the learner's
weighted advantages, and the vLLM backend's refusal."""

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("math_verify")

from allocbench.errors import ConfigError  # noqa: E402
from allocbench.ledger import Ledger  # noqa: E402
from allocbench.protocols import EarlyStop, Outcome  # noqa: E402
from real import make_env  # noqa: E402
from real.backends import SamplingParams  # noqa: E402
from real.backends.torch_backend import TorchBackend  # noqa: E402
from real.learner import group_advantages  # noqa: E402
from real.verifier import AnswerScan, last_boxed  # noqa: E402
from tests.real.conftest import SMALL  # noqa: E402


def answer_state(text: str) -> tuple[bool, int | None]:
    """(marker seen, index past the first closed boxed answer) of a whole text, by one scan."""
    scan = AnswerScan()
    scan.feed(text)
    return scan.marker, scan.closed_at


# long enough for the tiny model's whole answers (``\boxed{88}`` and EOS, 11-13 tokens)
OVERRIDES = {**SMALL, "generation.max_new_tokens": 14}


@pytest.fixture(scope="module")
def env():
    return make_env("tiny-arith", seed=0, **OVERRIDES)


def backend(world, seed=5):
    return TorchBackend(world.policy, seed, max_batch_rows=world.backend.max_batch_rows)


def round_of(world, n=64, prompts=4):
    """``n`` rollouts over ``prompts`` prompts: (prompt ids, counts)."""
    counts = [n // prompts] * prompts
    return [world.prompt_ids(i) for i in range(prompts)], counts


# ---------------------------------------------------------------- the answer scan

@pytest.mark.parametrize("text, marker, closed", [
    ("\\boxed{88}", True, 10),
    ("so \\boxed {1{2}3} and \\boxed{x}", True, 17),  # the first answer to close, braces matched
    ("\\boxed 5 then \\boxed{7}", True, 23),  # a brace-less answer closes nothing
    ("\\fbox{a}b", True, 8),
    ("no answer", False, None),
    ("\\boxe", False, None),
    ("\\boxed{unclosed {}", True, None),
])
def test_answer_state_by_hand_and_fed_in_any_pieces(text, marker, closed):
    assert answer_state(text) == (marker, closed)
    if closed is not None:
        assert last_boxed(text[:closed]) is not None
    rng = random.Random(0)
    for _ in range(30):
        scan, k = AnswerScan(), 0
        while k < len(text):
            n = rng.randint(0, 4)
            scan.feed(text[k:k + n])
            k += n
        assert (scan.marker, scan.closed_at) == (marker, closed)


# ---------------------------------------------------------------- the torch backend

def test_without_a_trigger_early_stopping_changes_nothing_not_even_the_random_stream(env):
    w = env.info["world"]
    prompts, counts = round_of(w, 32)
    a, b, c = backend(w), backend(w), backend(w)
    plain = a.generate(prompts, counts, w.sampling)
    same = b.generate(prompts, counts, w.sampling, stop=None)
    idle = c.generate(prompts, counts, w.sampling, stop=EarlyStop(abort_after=1000, answer_tail=1000))
    for x, y, z in zip(sum(plain, []), sum(same, []), sum(idle, [])):
        assert np.array_equal(x.ids, y.ids) and np.array_equal(x.ids, z.ids)
        assert np.array_equal(x.logprobs, y.logprobs) and np.array_equal(x.logprobs, z.logprobs)
        assert x.finished == z.finished and x.weight == z.weight == 1.0
    assert torch.equal(a.generator.get_state(), c.generator.get_state())


def test_a_closed_answer_ends_the_completion_after_answer_tail_tokens(env):
    w = env.info["world"]
    prompts, counts = round_of(w, 32)
    plain = sum(backend(w).generate(prompts, counts, w.sampling), [])
    cut = sum(backend(w).generate(prompts, counts, w.sampling, stop=EarlyStop(1000, answer_tail=0)), [])
    closed = 0
    for p, c in zip(plain, cut):
        text = w.policy.decode(c.ids)
        _, end = answer_state(w.policy.decode(p.ids))
        if end is None:  # no closed answer: as without early stopping
            assert np.array_equal(p.ids, c.ids) and c.finished == p.finished
            continue
        closed += 1
        assert text.endswith("}") and answer_state(text)[1] == len(text)  # right at its closing brace
        assert int(c.ids[-1]) not in w.policy.stop_ids and c.finished and c.weight == 1.0
        assert np.array_equal(c.ids, p.ids[:len(c.ids)])  # the same draws up to there
        assert np.array_equal(c.logprobs, p.logprobs[:len(c.ids)])
    assert closed > len(cut) // 2
    # one more token after the brace: the tiny model's EOS
    tail = sum(backend(w).generate(prompts, counts, w.sampling, stop=EarlyStop(1000, answer_tail=1)), [])
    for c, t in zip(cut, tail):
        if c.finished and answer_state(w.policy.decode(c.ids))[1] is not None:
            assert len(t.ids) == len(c.ids) + 1


def test_rows_without_a_marker_at_abort_after_are_aborted_unless_kept(env):
    w = env.info["world"]
    prompts, counts = round_of(w, 64)
    plain = sum(backend(w).generate(prompts, counts, w.sampling), [])
    stopped = sum(backend(w).generate(prompts, counts, w.sampling, stop=EarlyStop(3, keep_prob=0.5)), [])
    aborted = [c for c in stopped if c.weight == 0]
    kept = [c for c in stopped if c.weight != 0]
    assert 0.25 <= len(kept) / len(stopped) <= 0.75
    for c in aborted:
        assert len(c.ids) == 3 and len(c.logprobs) == 3 and not c.finished
    for c in kept:  # no marker fits in 3 tokens: every kept row was continued past the check
        assert c.weight == 2.0 and len(c.ids) == len(c.logprobs) > 3
    # the same draws as without early stopping up to the check (the uniforms come after)
    for p, c in zip(plain, stopped):
        assert np.array_equal(p.ids[:3], c.ids[:3])
    # keep_prob 1 keeps every row with weight 1
    every = sum(backend(w).generate(prompts, counts, w.sampling, stop=EarlyStop(3, keep_prob=1.0)), [])
    assert all(c.weight == 1.0 and len(c.ids) > 3 for c in every)


def test_the_abort_check_spares_rows_that_ended_or_show_a_marker(env):
    w = env.info["world"]
    prompts, counts = round_of(w, 32)
    params = SamplingParams(w.sampling.temperature, w.sampling.top_p, 14)
    # at 8 tokens the tiny model's answers show their marker (``\boxed`` is 6 characters)
    out = sum(backend(w).generate(prompts, counts, params, stop=EarlyStop(8, keep_prob=0.01)), [])
    for c in out:
        spared = answer_state(w.policy.decode(c.ids[:8]))[0] or (c.finished and len(c.ids) <= 8)
        assert (c.weight == 1.0) == spared and (c.weight in (0.0, 100.0)) != spared
    assert sum(c.weight == 1.0 for c in out) > len(out) // 2


# ---------------------------------------------------------------- sampler, ledger, learner

def test_the_sampler_scores_aborted_rollouts_0_and_carries_the_weights(env):
    w = env.info["world"]
    outcomes = env.sampler.sample({0: 16, 1: 16}, stop=EarlyStop(3, keep_prob=0.5))
    for o in outcomes:
        assert o.weights is not None and o.weights.dtype == np.float64
        aborted = o.weights == 0
        assert aborted.any() and (~aborted).any()
        assert (o.rewards[aborted] == 0).all() and (o.tokens[aborted] == 3).all()
        assert set(o.weights[~aborted].tolist()) == {2.0}
        stored = w.store.get(o.rollout_ids)
        assert [len(r.ids) for r in stored] == o.tokens.tolist()
        assert [r.reward for r in stored] == o.rewards.tolist()
    assert all(o.weights is None for o in env.sampler.sample({2: 4}))


def test_the_ledger_counts_the_tokens_generated(env):
    ledger = Ledger(env.sampler)
    out = ledger.sample({0: 4}, stop=EarlyStop(3, 0.5))
    assert set(out) == {0} and out[0].n == 4 and out[0].weights is not None
    first = int(out[0].tokens.sum())
    assert ledger.total.tokens == first and (out[0].tokens[out[0].weights == 0] == 3).all()
    out = ledger.sample({1: 8}, stop=EarlyStop(1000, answer_tail=0))
    assert ledger.total.tokens == first + int(out[1].tokens.sum()) and ledger.total.rollouts == 12


def test_the_vllm_backend_refuses_early_stopping():
    from real.backends.vllm_backend import VLLMBackend, refuse_early_stop

    refuse_early_stop(None)
    with pytest.raises(ConfigError, match="generation.backend = torch"):
        refuse_early_stop(EarlyStop(3))
    # the check comes first in generate (no engine needed to reach it)
    with pytest.raises(ConfigError, match="early stopping"):
        VLLMBackend.generate(object.__new__(VLLMBackend), [[1]], [1], SamplingParams(), stop=EarlyStop(3))


def test_weighted_group_advantages_by_hand():
    r, wt = np.array([1.0, 0, 0, 1]), np.array([0.0, 2, 1, 1])
    mean = 1 / 4  # (0*1 + 2*0 + 1*0 + 1*1) / 4
    std = np.sqrt((2 * mean**2 + mean**2 + (1 - mean) ** 2) / 4)
    expected = np.array([0, 2 * (0 - mean), 1 * (0 - mean), 1 * (1 - mean)])
    np.testing.assert_allclose(group_advantages(r, True, wt), expected / (std + 1e-6), rtol=1e-12)
    np.testing.assert_allclose(group_advantages(r, False, wt), expected, rtol=1e-12)
    assert (group_advantages(r, True, np.zeros(4)) == 0).all()
    # weights of 1 give the unweighted advantages; no weights, exactly today's arithmetic
    for norm in (True, False):
        np.testing.assert_allclose(group_advantages(r, norm, np.ones(4)), group_advantages(r, norm), rtol=1e-12)
    plain = r - r.mean()
    assert np.array_equal(group_advantages(r, False), plain)
    assert np.array_equal(group_advantages(r), plain / (r.std() + 1e-6))


def test_update_trains_only_on_the_rollouts_kept():
    env = make_env("tiny-arith", seed=0, **OVERRIDES)
    w = env.info["world"]
    learner = w.learner
    (g,) = env.sampler.sample({0: 4})
    store_rewards = np.array([1.0, 0.0, 0.0, 1.0])
    for r, x in zip(w.store.get(g.rollout_ids), store_rewards):
        r.reward = float(x)
    weights = np.array([0.0, 2.0, 1.0, 1.0])
    group = Outcome(g.prompt_id, store_rewards, g.tokens, 0, g.rollout_ids, weights)
    seen = {}
    step = learner.step

    def spy(rollouts, advantages):
        seen.update(ids=[r.id for r in rollouts], advantages=advantages.copy())
        return step(rollouts, advantages)

    learner.step = spy
    stats = learner.update([group])
    assert stats["rollouts"] == 3 and seen["ids"] == g.rollout_ids[1:].tolist()
    assert stats["tokens"] == int(g.tokens[1:].sum())
    np.testing.assert_allclose(seen["advantages"], group_advantages(store_rewards, True, weights)[1:], rtol=1e-6)
    # a group whose rollouts were all aborted contributes nothing
    version = learner.version
    aborted = Outcome(g.prompt_id, store_rewards, g.tokens, 0, g.rollout_ids, np.zeros(4))
    stats = learner.update([aborted])
    assert stats["rollouts"] == 0 and learner.version == version
    # with another group, only that one is trained on
    (h,) = env.sampler.sample({1: 2})
    stats = learner.update([aborted, h])
    assert stats["rollouts"] == 2 and seen["ids"] == h.rollout_ids.tolist()


def test_a_round_with_early_stopping_trains_through_the_environment():
    env = make_env("tiny-arith", seed=0, **OVERRIDES)
    outcomes = env.sampler.sample({i: 8 for i in range(4)}, stop=EarlyStop(3, keep_prob=0.5))
    kept = sum(int((o.weights > 0).sum()) for o in outcomes)
    report = env.learner.update(outcomes)
    assert report["rollouts"] == kept and report["gen_tokens"] == sum(int(o.tokens.sum()) for o in outcomes)
