"""The paper's presets load, validate and give the strategy, learner and generation settings the
paper uses; the backend choice (auto / torch / vllm). Nothing is downloaded: no model, no data."""

from pathlib import Path

import pytest

from allocbench.errors import ConfigError
from allocbench.strategy import make_strategy
from real.presets import PAPER_STRATEGY_SETTINGS, PRESETS, get_preset, load_toml, to_toml

PAPER = ["paper-1.5b-deepmath", "paper-4b-polaris", "paper-8b-polaris", "paper-14b-polaris"]
SHAPES = {  # preset: (model, train data, n, pilot_n, commit_n)
    "paper-1.5b-deepmath": ("friendshipkim/Qwen2.5-Math-1.5B", "deepmath-103k", 128, 32, 96),
    "paper-4b-polaris": ("Qwen/Qwen3-4B-Base", "polaris-53k", 64, 16, 48),
    "paper-8b-polaris": ("Qwen/Qwen3-8B-Base", "polaris-53k", 64, 16, 48),
    "paper-14b-polaris": ("Qwen/Qwen3-14B-Base", "polaris-53k", 64, 16, 48),
}
# The recipe's run scripts (databricks/pilot-commit train_scripts/pc_qwen2.5-1.5b_p32c96.sh and
# pc_qwen3-4b_p16c48.sh; 8B and 14B have none and follow the 4B one): preset -> (max_prompt_length,
# max_response_length, total_training_steps, exploration_n, n_resp_per_prompt, buffer_sampling_method)
RECIPE = {
    "paper-1.5b-deepmath": (2048, 8192, 1000, 32, 96, "max_variance"),
    "paper-4b-polaris": (2048, 4096, 500, 16, 48, "random"),
    "paper-8b-polaris": (2048, 4096, 500, 16, 48, "random"),
    "paper-14b-polaris": (2048, 4096, 500, 16, 48, "random"),
}


def test_paper_presets_are_listed():
    import real

    assert set(PAPER) <= set(real.scenario_names())


@pytest.mark.parametrize("name", PAPER)
def test_paper_preset_settings(name):
    p = get_preset(name)  # validates
    model, train, n, pilot_n, commit_n = SHAPES[name]
    assert p.model.name == model and p.model.dtype == "bfloat16" and p.model.chat
    assert p.data.train == train and p.data.train_size is None
    assert p.data.eval == ("math500", "aime24", "amc23", "minerva", "olympiadbench")
    assert p.run.train_batch == 128 and p.run.group_size == n
    # generation: vLLM, the rollouts' sampling distribution unchanged (T = 1, no top-p)
    g = p.generation
    assert g.backend == "vllm" and g.temperature == 1.0 and g.top_p == 1.0 and g.sleep_mode
    assert g.max_model_len > g.max_new_tokens >= 3072
    # the DAPO recipe: clip-higher, token-mean, no KL
    lr = p.learner
    assert (lr.eps_low, lr.eps_high, lr.loss_agg, lr.kl_coef) == (0.2, 0.28, "token-mean", 0.0)
    assert lr.lr == 1e-6 and not lr.fsdp
    # the strategies' defaults at this shape: pilot + commit = n, generation batch 3 x 128 = 384
    resolved = make_strategy("pilot_commit").resolved(p.run.train_batch, p.run.group_size)
    assert (resolved["pilot_n"], resolved["commit_n"], resolved["gen_batch_size"]) == (pilot_n, commit_n, 384)
    assert make_strategy("dapo").resolved(p.run.train_batch, p.run.group_size)["gen_batch_size"] == 384


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_round_trip_through_toml(tmp_path, name):
    path = tmp_path / "p.toml"
    path.write_text(to_toml(get_preset(name, **{"generation.tensor_parallel_size": 2, "learner.fsdp": True})))
    loaded = get_preset(str(path))
    assert loaded.data.train_size is None  # None fields come from the named base preset
    assert loaded.generation.tensor_parallel_size == 2 and loaded.learner.fsdp
    assert loaded == load_toml(path)


def test_prompts_ask_for_a_boxed_answer():
    # the recipe's user turn (data/process_deepmath_103k.py, process_polaris_53k.py), no system prompt
    for name in PAPER:
        model = PRESETS[name].model
        assert model.system_prompt is None
        assert model.prompt_template.format(question="What is 1+1?") == (
            "What is 1+1?\n\nLet's think step by step and output the final answer within \\boxed{}.")


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_take_the_recipe_scripts_values(name):
    prompt_len, response_len, steps, pilot_n, commit_n, order = RECIPE[name]
    p = get_preset(name)
    g, lr, e = p.generation, p.learner, p.eval
    assert g.max_new_tokens == response_len and g.max_model_len == prompt_len + response_len
    assert (g.temperature, g.top_p) == (1.0, 1.0)
    assert p.run.steps == steps and p.run.eval_every == 5  # total_training_steps, test_freq
    assert p.run.train_batch == 128 and p.run.group_size == pilot_n + commit_n
    # val_kwargs: T = 1, top-p 0.7
    assert (e.temperature, e.top_p) == (1.0, 0.7)
    # lr 1e-6, weight decay 0.1, grad clip 1; mini-batches of 32 prompts: 128 / 32 = 4; the recipe's
    # 10 warm-up steps are training steps (one scheduler step per update), 4 optimizer steps each here
    assert (lr.lr, lr.weight_decay, lr.max_grad_norm, lr.mini_batches) == (1e-6, 0.1, 1.0, 4)
    assert lr.lr_warmup_steps == 10 * lr.mini_batches
    # the strategy: the scripts' pilot / commit sizes, keep band, exclusion, staleness, rounds, generation
    # batch and commit order, from the strategy's defaults and PAPER_STRATEGY_SETTINGS
    settings = PAPER_STRATEGY_SETTINGS.get(name, {}).get("pilot_commit", {})
    pc = make_strategy("pilot_commit", **settings).resolved(p.run.train_batch, p.run.group_size)
    assert (pc["pilot_n"], pc["commit_n"], pc["gen_batch_size"]) == (pilot_n, commit_n, 3 * 128)
    assert (pc["lower"], pc["upper"], pc["evict_threshold"]) == (0.125, 0.25, 1.0)
    assert (pc["max_staleness"], pc["max_num_gen_batches"], pc["commit_order"]) == (4, 10, order)
    assert set(PAPER_STRATEGY_SETTINGS) <= set(PAPER)


@pytest.mark.parametrize("overrides, message", [
    ({"generation.backend": "jax"}, "generation.backend must be one of"),
    ({"generation.tensor_parallel_size": 0}, "tensor_parallel_size"),
    ({"generation.gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"generation.max_model_len": 100}, "max_model_len"),
    ({"learner.loss_agg": "sum"}, "loss_agg"),
    ({"data.eval": 3}, "source name or a list"),
])
def test_validation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("paper-1.5b-deepmath", **overrides)


def test_eval_takes_one_source_or_a_list():
    assert get_preset("tiny-arith", **{"data.eval": ["math500", "aime24"]}).data.eval == ("math500", "aime24")
    assert get_preset("paper-4b-polaris", **{"data.eval": "math500"}).data.eval == "math500"


def test_backend_choice():
    torch = pytest.importorskip("torch")
    from real.backends import backend_options, resolve_backend
    from real.backends.vllm_backend import vllm_available

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "torch"
    assert resolve_backend("auto", gpu) == ("vllm" if vllm_available() else "torch")
    assert resolve_backend("vllm", cpu) == "vllm" and resolve_backend("torch", gpu) == "torch"
    g = get_preset("paper-14b-polaris", **{"generation.tensor_parallel_size": 2}).generation
    assert backend_options(g, "vllm")["tensor_parallel_size"] == 2
    assert backend_options(g, "torch") == {"max_batch_rows": g.max_batch_rows}


def test_train_command_checks_the_paper_preset_before_loading(tmp_path, capsys):
    """The CLI accepts the paper presets (and --backend) and checks them before any download."""
    from cli import main

    with pytest.raises(SystemExit):  # argparse
        main(["train", "--preset", "paper-1.5b-deepmath", "--strategy", "pilot_commit", "--backend", "jax",
              "--out", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err
    code = main(["train", "--preset", "paper-1.5b-deepmath", "--strategy", "pilot_commit",
                 "--env-set", "generation.tensor_parallel_size=0", "--out", str(tmp_path / "x")])
    assert code == 2 and "tensor_parallel_size" in capsys.readouterr().err
    assert not Path(tmp_path / "x").exists()


def test_eval_benchmarks_are_scored_separately_and_averaged(tmp_path, monkeypatch):
    """A list of eval sources (the paper's five; two small files here): eval_acc is the mean
    of the benchmarks' accuracies, each benchmark's also reported."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import json

    import numpy as np

    from real import make_env

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"question": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(4)))
    b.write_text("".join(json.dumps({"question": f"{i}+2=", "answer": str(i + 2)}) + "\n" for i in range(2)))
    env = make_env("tiny-arith", seed=0, **{"model.warmup_steps": 0, "data.train_size": 16,
                                            "generation.backend": "torch", "data.eval": [str(a), str(b)],
                                            "data.eval_size": None, "eval.k": 1, "generation.max_new_tokens": 4})
    world = env.info["world"]
    assert [p.source for p in world.eval] == [str(a)] * 4 + [str(b)] * 2
    verdicts = np.array([1.0, 0, 0, 0, 1.0, 1.0])  # a: 1/4, b: 2/2
    world.verifier.score_many = lambda texts, answers: verdicts[: len(texts)]
    scores = env.evaluator.evaluate()
    assert scores["eval_acc"] == pytest.approx((0.25 + 1.0) / 2)
    slugs = sorted(k for k in scores if k.startswith("eval_acc_"))
    assert len(slugs) == 2 and sorted(scores[k] for k in slugs) == [0.25, 1.0]


def test_stop_tokens_end_completions_on_the_torch_backend():
    """model.stop_tokens (the paper presets stop on <|im_end|>, which a base model's tokenizer
    does not call EOS): a completion ends at the first stop token."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from real import make_env
    from real.backends import SamplingParams

    env = make_env("tiny-arith", seed=0, **{"model.warmup_steps": 0, "data.train_size": 8, "data.eval_size": 2,
                                            "generation.backend": "torch", "model.stop_tokens": ["1", "2"]})
    world = env.info["world"]
    stops = world.policy.stop_ids
    assert stops[0] == world.policy.eos_id and len(stops) == 3
    out = world.backend.generate([world.prompt_ids(0)], [64], SamplingParams(1.0, 1.0, 12))[0]
    assert any(c.finished for c in out)
    for c in out:
        inner = c.ids[:-1].tolist()
        assert not set(inner) & set(stops)
        assert c.finished == (int(c.ids[-1]) in stops)
    with pytest.raises(ConfigError, match="not a token"):
        make_env("tiny-arith", seed=0, **{"model.warmup_steps": 0, "data.train_size": 8, "data.eval_size": 2,
                                          "generation.backend": "torch", "model.stop_tokens": ["<|im_end|>"]})
