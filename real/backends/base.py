"""The generation seam: one batched call per generation round.

A backend turns prompts (token ids) and per-prompt sample counts into completions (token ids
plus the log-probability of each sampled token under the sampling distribution,
``log_softmax(logits / temperature)``). The sampler, learner and evaluator only see this
protocol, so a vLLM backend (its own engine, weights synced after each optimizer step through
``update_weights``) slots in by name without touching them.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from allocbench.errors import ConfigError
from allocbench.protocols import EarlyStop


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens <= 0:
            raise ConfigError(f"bad sampling parameters: {self}")


@dataclass(frozen=True)
class Completion:
    ids: np.ndarray  # generated token ids, the stop token included when one was generated
    logprobs: np.ndarray  # float32, one per generated token: behaviour log-probabilities
    finished: bool  # stopped on EOS, or where early stopping ended a closed answer (False: cut at
    # max_new_tokens, or aborted by early stopping)
    weight: float = 1.0  # importance weight under early stopping: 0 aborted, 1 / keep_prob continued past
    # the abort point, 1 otherwise (and always without early stopping)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


class GenerationBackend(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], counts: Sequence[int], params: SamplingParams,
                 generator=None, stop: EarlyStop | None = None) -> list[list[Completion]]:
        """``counts[i]`` completions of ``prompts[i]`` for every i, in one generation round;
        ``generator`` is the random stream to sample from (the backend's own when None).
        ``stop`` stops rollouts early on the answer marker (``allocbench.protocols.EarlyStop``,
        the marker read by ``real.verifier.AnswerScan``); a backend that cannot raises
        ConfigError."""

    def update_weights(self) -> None:
        """Called after every optimizer step (a backend with its own copy of the weights syncs)."""

    def sleep(self) -> None:
        """Called before every optimizer step: a backend holding accelerator memory of its own
        (vLLM's weights and KV cache) may release it until the next ``update_weights``."""

    def state_dict(self) -> dict:
        """Random state to checkpoint."""

    def load_state_dict(self, state: dict) -> None: ...


BACKENDS = {
    "torch": "real.backends.torch_backend:TorchBackend",
    "vllm": "real.backends.vllm_backend:VLLMBackend",
}


def resolve_backend(name: str, device) -> str:
    """``auto``: vllm where vLLM imports and the policy is on a GPU, torch otherwise."""
    if name != "auto":
        return name
    if getattr(device, "type", str(device)) == "cuda" and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "torch"


def backend_options(generation, name: str) -> dict:
    """The constructor options of backend ``name`` from a preset's ``generation`` section."""
    if name == "torch":
        return {"max_batch_rows": generation.max_batch_rows}
    if name == "vllm":
        g = generation
        return dict(tensor_parallel_size=g.tensor_parallel_size, gpu_memory_utilization=g.gpu_memory_utilization,
                    max_model_len=g.max_model_len, sleep_mode=g.sleep_mode, kv_cache_gib=g.kv_cache_gib,
                    seed_requests=g.seed_requests)
    return {}


def make_backend(name: str, policy, seed: int, **options) -> GenerationBackend:
    if name not in BACKENDS:
        raise ConfigError(f"unknown generation backend {name!r}; known: auto, {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        raise ConfigError(f"generation backend {name!r} is not available here ({e})") from None
    return cls(policy, seed, **options)
