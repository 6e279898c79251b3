"""The vLLM generation backend (real.backends.vllm_backend) on the tiny model, on CPU.

Run with the CPU build of vLLM (``.ci/vllm`` installs it in its own venv):
``pytest -q -m vllm tests/real/test_vllm.py``. Skipped where vLLM does not import. The GPU
tests at the end (marked gpu) run the paper presets' smoke path on a GPU machine that reaches
the hub.
"""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("math_verify")
pytest.importorskip("vllm")

from allocbench import Checkpoint, RunConfig, make_strategy, run  # noqa: E402
from cli import main  # noqa: E402
from allocbench.schema import check_table, read_table  # noqa: E402
from real import make_env  # noqa: E402
from real.backends import SamplingParams  # noqa: E402
from real.backends.vllm_backend import VLLMBackend  # noqa: E402
from real.rollouts import Rollout  # noqa: E402

pytestmark = pytest.mark.vllm

VLLM = {"generation.backend": "vllm"}


def coin_rewards(env):
    """A fixed coin per completion text instead of the verifier (half right), so the barely
    warmed-up model still yields mixed groups (non-zero advantages)."""
    def score_many(texts, answers):
        return np.array([float(zlib.crc32(f"{t}|{a}".encode()) % 2) for t, a in zip(texts, answers)])

    env.info["world"].verifier.score_many = score_many
    return env


@pytest.fixture(scope="module")
def env():
    from tests.real.conftest import SMALL

    return coin_rewards(make_env("tiny-arith", seed=0, **{**SMALL, **VLLM, "learner.lr": 3e-3}))


def test_rows_satisfy_the_schema_through_run(small_overrides):
    env = make_env("tiny-arith", seed=0, **{**small_overrides, **VLLM})
    assert isinstance(env.info["world"].backend, VLLMBackend)
    table = run(env, make_strategy("grpo"), RunConfig(steps=2, eval_every=1))
    check_table(table)
    assert table.step.tolist() == [0, 1, 2] and table.eval_acc.notna().all()
    assert table.cum_rollouts.tolist() == [0, 16, 32]
    assert (table.cum_tokens.diff().dropna() > 0).all()
    assert table.learn_gen_tokens.iloc[1:].sum() == table.cum_tokens.iloc[-1]
    assert (table.learn_time_push_s.iloc[1:] > 0).all()


def test_one_generate_call_per_round_with_per_prompt_n(env):
    world = env.info["world"]
    llm = world.backend.llm
    calls = []
    original = llm.generate

    def spy(prompts, params, **kw):
        outputs = original(prompts, params, **kw)
        calls.append(([p["prompt_token_ids"] for p in prompts], [sp.n for sp in params], outputs))
        return outputs

    llm.generate = spy
    try:
        requests = {3: 2, 7: 5, 11: 1, 20: 3}
        outcomes = env.sampler.sample(requests)
    finally:
        llm.generate = original
    assert len(calls) == 1
    prompts, ns, outputs = calls[0]
    assert ns == [2, 5, 1, 3]
    assert prompts == [world.prompt_ids(i) for i in requests]
    assert [o.prompt_id for o in outcomes] == list(requests)
    for o, out, n in zip(outcomes, outputs, ns):
        assert o.n == n == len(o.tokens)
        # Outcome.tokens: the token counts vLLM reported, stop token included
        assert sorted(o.tokens.tolist()) == sorted(len(c.token_ids) for c in out.outputs)
    # the learner's side: every stored completion carries one log-prob per token
    for pid in requests:
        for r in world.store.rollouts(pid):
            assert len(r.logprobs) == len(r.ids) and np.all(r.logprobs <= 0)


def _engine_vs_learner(world, prompts, temperature=1.0, seed=5):
    """Completions from the engine, and the max |engine log-prob - learner log-prob| over them."""
    params = SamplingParams(temperature, 1.0, world.preset.generation.max_new_tokens)
    gen = torch.Generator().manual_seed(seed)
    completions = world.backend.generate([world.prompt_ids(i) for i in prompts], [4] * len(prompts), params,
                                         generator=gen)
    rollouts = [Rollout(i, c.ids, c.logprobs, 0.0, world.learner.version, c.finished)
                for i, cs in zip(prompts, completions) for c in cs]
    learner = world.learner
    saved, learner.temperature = learner.temperature, temperature
    try:
        with torch.no_grad():
            ours, _ = learner._logprobs(world.policy.model, [world.prompt_ids(r.prompt_id) for r in rollouts],
                                        rollouts)
    finally:
        learner.temperature = saved
    err = max(float((lp.float() - torch.as_tensor(r.logprobs)).abs().max()) for lp, r in zip(ours, rollouts))
    return rollouts, err


def test_weight_push_engine_logprobs_match_the_learner_after_a_step(env):
    world = env.info["world"]
    prompts = [1, 2, 4, 8]
    before, err = _engine_vs_learner(world, prompts)
    assert err < 1e-4
    version = world.learner.version
    outcomes = env.sampler.sample({i: 4 for i in range(30, 34)})
    stats = env.learner.update(outcomes)  # the environment's: sleep, step, push
    assert world.learner.version == version + 1 and stats["grad_norm"] > 0
    # the weights moved: the old completions are less likely or more likely now ...
    with torch.no_grad():
        now, _ = world.learner._logprobs(world.policy.model, [world.prompt_ids(r.prompt_id) for r in before], before)
    moved = max(float((lp - torch.as_tensor(r.logprobs)).abs().max()) for lp, r in zip(now, before))
    assert moved > 1e-3
    # ... and the engine samples from the new weights: its log-probs are the learner's
    _, err = _engine_vs_learner(world, prompts)
    assert err < 1e-4, f"engine and learner disagree by {err} after the weight push"
    _, err = _engine_vs_learner(world, prompts, temperature=0.7)  # log_softmax(logits / T)
    assert err < 1e-4


def test_stop_tokens_end_completions(env):
    from dataclasses import replace

    world = env.info["world"]
    policy = world.policy
    saved = policy.cfg
    policy.cfg = replace(saved, stop_tokens=("1", "2"))
    try:
        stops = policy.stop_ids
        out = world.backend.generate([world.prompt_ids(0)], [64], SamplingParams(1.0, 1.0, 12))[0]
    finally:
        policy.cfg = saved
    assert len(stops) == 3 and any(c.finished for c in out)
    for c in out:
        assert not set(c.ids[:-1].tolist()) & set(stops)
        assert c.finished == (int(c.ids[-1]) in stops)


def test_fsdp_learner_pushes_its_gathered_weights(small_overrides):
    """learner.fsdp (a world of one here): the push gathers the sharded weights (DTensors)."""
    env = coin_rewards(make_env("tiny-arith", seed=2, **{**small_overrides, **VLLM, "learner.fsdp": True,
                                                          "learner.lr": 3e-3}))
    world = env.info["world"]
    assert hasattr(next(world.policy.model.parameters()), "full_tensor")  # sharded
    env.learner.update(env.sampler.sample({i: 4 for i in range(4)}))
    _, err = _engine_vs_learner(world, [1, 2])
    assert err < 1e-4


def test_evaluation_is_reproducible_and_the_backend_state_round_trips(env):
    world = env.info["world"]
    first, second = env.evaluator.evaluate(), env.evaluator.evaluate()
    del first["eval_time_s"], second["eval_time_s"]
    assert first == second  # the eval stream restarts
    state = world.backend.state_dict()
    a = world.backend.generate([world.prompt_ids(0)], [3], world.sampling)
    world.backend.load_state_dict(state)
    b = world.backend.generate([world.prompt_ids(0)], [3], world.sampling)
    assert [c.ids.tolist() for c in a[0]] == [c.ids.tolist() for c in b[0]]


def test_resume_continues_exactly(tmp_path, small_overrides):
    overrides = {**small_overrides, **VLLM}
    straight = run(coin_rewards(make_env("tiny-arith", seed=3, **overrides)), make_strategy("grpo"),
                   RunConfig(steps=3, seed=3, eval_every=1))
    ckpt = tmp_path / "ckpt"
    run(coin_rewards(make_env("tiny-arith", seed=3, **overrides)), make_strategy("grpo"),
        RunConfig(steps=2, seed=3, eval_every=1), checkpoint=Checkpoint(ckpt, every=1))
    resumed = run(coin_rewards(make_env("tiny-arith", seed=3, **overrides)), make_strategy("grpo"),
                  RunConfig(steps=3, seed=3, eval_every=1), checkpoint=Checkpoint(ckpt, every=1))
    cols = ["cum_rollouts", "cum_tokens", "train_reward", "eval_acc"]
    assert resumed[cols].equals(straight[cols])


def test_tiny_arith_preset_end_to_end_on_vllm(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--preset", "tiny-arith", "--strategy", "pilot_commit", "--backend", "vllm",
                 "--steps", "3", "--eval-every", "3", "--out", str(out), "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0 and "eval_acc" in stdout
    table = read_table(out / "runs.parquet")
    check_table(table)
    assert table.step.tolist() == [0, 1, 2, 3] and table.eval_acc.iloc[[0, -1]].notna().all()
    assert (table.prompts_trained.iloc[1:] == 16).all()
    assert 'backend = "vllm"' in (out / "preset.toml").read_text()


# ---------------------------------------------------------------- GPU (the paper presets)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_SMALL = {"data.train_size": 32, "data.eval_size": 4, "run.train_batch": 4, "run.group_size": 8,
             "generation.max_new_tokens": 512, "learner.micro_batch_rows": 4, "eval.k": 1}


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("preset", ["paper-1.5b-deepmath", "paper-4b-polaris"])
def test_paper_preset_smoke_on_one_gpu(preset):
    env = make_env(preset, seed=0, **GPU_SMALL)
    world = env.info["world"]
    assert isinstance(world.backend, VLLMBackend) and world.backend.sleep_mode
    assert next(world.policy.model.parameters()).dtype == torch.bfloat16
    table = run(env, make_strategy("grpo"), RunConfig(steps=2, eval_every=2))
    check_table(table)
    assert table.eval_acc.iloc[[0, -1]].notna().all()
    assert np.isfinite(table.learn_loss.iloc[1:]).all() and (table.learn_time_push_s.iloc[1:] > 0).all()
    # after the pushes (and sleep / wake-up) the engine still samples from the learner's weights
    _, err = _engine_vs_learner(world, [0, 1])
    assert err < 0.1  # bf16


@pytest.mark.gpu
@gpu
def test_paper_command_on_one_gpu(tmp_path, capsys):
    """`allocbench train --preset paper-1.5b-deepmath --strategy pilot_commit`, shortened."""
    out = tmp_path / "run"
    sets = [x for k, v in GPU_SMALL.items() for x in ("--env-set", f"{k}={v}")]
    code = main(["train", "--preset", "paper-1.5b-deepmath", "--strategy", "pilot_commit", "--steps", "1",
                 "--out", str(out), *sets])
    assert code == 0 and (out / "runs.parquet").exists()
