"""The real environment: sampler, learner and evaluator around one policy.

``make_env(preset, seed, **overrides)`` loads the data, the policy (warm-up included for the
tiny model), the generation backend and the verifier, and returns an ``Environment`` whose
``save`` / ``load`` hooks checkpoint the model, the optimizer, the rollout store and every
random stream, so a resumed run continues exactly.

The environment, not the GRPO learner, owns the generation engine's housekeeping: its
``learner`` (``RealLearner``) puts the engine to sleep before each update (a vLLM engine frees
the GPU for the learner), runs the GRPO step, pushes the new weights into the engine after it
(which wakes it) and ends the rollout store's training step (retention, real/rollouts.py). A
step with no groups changes no weights: no sleep, no push. The sampler gives every rollout
the store's id (``Outcome.rollout_ids``) and, for a round with early stopping, its importance
weight (``Outcome.weights``; the torch backend stops rollouts, an aborted one scores 0).
``features`` (Environment.features) are the current policy's pooled last hidden states of the
prompts, counted by the ledger in prompts and prompt tokens and timed in the learner's report
(``time_features_s``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from allocbench.errors import ConfigError
from allocbench.metrics import solved_shares
from allocbench.protocols import EarlyStop, Environment, Outcome, PromptFeatures
from real import presets as P
from real.backends import SamplingParams, backend_options, make_backend, resolve_backend
from real.data import Problem, load_problems
from real.learner import GRPOLearner
from real.rollouts import Rollout, RolloutStore
from real.verifier import MathVerifier


class Timer:
    """Seconds and counts accumulated between two learner updates (one training step)."""

    def __init__(self):
        self.values: dict[str, float] = {}

    def add(self, key: str, value: float) -> None:
        self.values[key] = self.values.get(key, 0.0) + value

    def take(self, keys: tuple[str, ...] = ("time_gen_s", "time_score_s", "gen_tokens")) -> dict:
        out = {k: self.values.get(k, 0.0) for k in keys}
        self.values = {}
        return out


class RealLearner:
    """The Learner protocol the runner sees: the GRPO step with the generation engine's
    housekeeping around it, and the step's timings (``time_gen_s``, ``time_score_s``,
    ``gen_tokens`` and ``time_features_s``, the prompt features' forward passes, since the last
    update; ``time_learn_s`` for the whole update, of which ``time_store_s`` was the rollout
    store and ``time_push_s`` the weight push)."""

    def __init__(self, world: "RealWorld"):
        self.world = world

    @property
    def version(self) -> int:
        return self.world.learner.version

    def update(self, groups: list[Outcome]) -> dict:
        w = self.world
        start = time.perf_counter()
        timing = w.timer.take(("time_gen_s", "time_score_s", "gen_tokens", "time_features_s"))
        if groups:
            w.backend.sleep()  # a vLLM engine frees the GPU for the step
        stats = w.learner.update(groups)
        push_start = time.perf_counter()
        if groups:
            w.backend.update_weights()  # the new weights into the engine (waking it)
        push_s = time.perf_counter() - push_start
        store_start = time.perf_counter()
        w.store.end_step()
        store_s = stats.pop("time_store_s", 0.0) + time.perf_counter() - store_start
        return {**stats, **timing, "time_learn_s": time.perf_counter() - start, "time_store_s": store_s,
                "time_push_s": push_s}


class RealSampler:
    """The Sampler protocol: one batched generation round per call, scored by the verifier."""

    def __init__(self, world: "RealWorld"):
        self.world = world

    def sample(self, requests: Mapping[int, int], stop: EarlyStop | None = None) -> list[Outcome]:
        """``stop``: early stopping (the backend stops the rollouts; an aborted one scores 0
        whatever it wrote, and the outcomes carry the rollouts' importance ``weights``)."""
        w = self.world
        ids = [int(i) for i in requests]
        counts = [int(requests[i]) for i in requests]
        for i in ids:
            if not 0 <= i < len(w.train):
                raise ValueError(f"request for prompt {i} outside the training pool of {len(w.train)}")
        start = time.perf_counter()
        completions = w.backend.generate([w.prompt_ids(i) for i in ids], counts, w.sampling, stop=stop)
        mid = time.perf_counter()
        flat = [c for cs in completions for c in cs]
        answers = [w.train[i].answer for i, c in zip(ids, counts) for _ in range(c)]
        scored = [k for k, c in enumerate(flat) if c.weight > 0]  # an aborted rollout scores 0 unread
        rewards = np.zeros(len(flat), dtype=np.float64)
        rewards[scored] = w.verifier.score_many([w.policy.decode(flat[k].ids) for k in scored],
                                                [answers[k] for k in scored])
        end = time.perf_counter()
        w.timer.add("time_gen_s", mid - start)
        w.timer.add("time_score_s", end - mid)
        outcomes, k = [], 0
        version = w.learner.version
        for i, cs in zip(ids, completions):
            r = rewards[k: k + len(cs)]
            k += len(cs)
            tokens = np.array([c.n_tokens for c in cs], dtype=np.int64)
            rollout_ids = w.store.add([Rollout(i, c.ids, c.logprobs, float(x), version, c.finished)
                                       for c, x in zip(cs, r)])
            w.timer.add("gen_tokens", float(tokens.sum()))
            weights = None if stop is None else np.array([c.weight for c in cs], dtype=np.float64)
            outcomes.append(Outcome(i, r.astype(np.float64), tokens, 0, rollout_ids, weights))
        return outcomes


class RealEvaluator:
    """avg@k (pass@1 for k = 1) on the held-out problems, greedy or sampled; the sampling stream
    restarts from the same seed at every evaluation, so curves compare like with like.
    ``eval_time_s``: the evaluation's seconds (generation and scoring)."""

    def __init__(self, world: "RealWorld"):
        self.world = world

    def evaluate(self) -> dict:
        w, cfg = self.world, self.world.preset.eval
        start = time.perf_counter()
        params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens or w.preset.generation.max_new_tokens)
        generator = torch.Generator(device=w.policy.device)
        generator.manual_seed(cfg.seed)
        k = 1 if cfg.temperature == 0 else cfg.k
        prompts = [w.policy.prompt_ids(p.question) for p in w.eval]
        completions = w.backend.generate(prompts, [k] * len(prompts), params, generator=generator)
        texts = [w.policy.decode(c.ids) for cs in completions for c in cs]
        answers = [p.answer for p in w.eval for _ in range(k)]
        correct = w.verifier.score_many(texts, answers).reshape(len(prompts), k)
        rate = correct.mean(1)
        timing = {"eval_time_s": time.perf_counter() - start}
        sources = np.array([p.source for p in w.eval])
        names = list(dict.fromkeys(sources.tolist()))
        if len(names) <= 1:
            return {"eval_acc": float(rate.mean()), **solved_shares(rate), **timing}
        # several benchmarks: each one's accuracy, and their mean (every benchmark weighs the same)
        per = {name: rate[sources == name] for name in names}
        out = {f"eval_acc_{_slug(name)}": float(r.mean()) for name, r in per.items()}
        shares = [solved_shares(r) for r in per.values()]
        return {"eval_acc": float(np.mean([r.mean() for r in per.values()])),
                **{k: float(np.mean([s[k] for s in shares])) for k in shares[0]}, **out, **timing}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


class RealWorld:
    """What the sampler, learner and evaluator share."""

    def __init__(self, preset: P.Preset, seed: int):
        self.preset, self.seed = preset, seed
        self.train, self.eval, self.reports = load_data(preset)
        warm = warmup_problems(preset, self.eval) if preset.model.warmup_steps > 0 else None
        from real.policy import load_policy, resolve_device

        if preset.learner.fsdp:  # join the torchrun job (and take this rank's GPU) before loading
            from real.learner import init_distributed

            init_distributed(resolve_device(preset.model.device).type)

        self.policy = load_policy(preset.model, warm)
        g = preset.generation
        self.sampling = SamplingParams(g.temperature, g.top_p, g.max_new_tokens)
        run_seeds = np.random.SeedSequence([seed, 11]).generate_state(2)
        torch.manual_seed(int(run_seeds[0]))
        self.backend_name = resolve_backend(g.backend, self.policy.device)
        self.backend = make_backend(self.backend_name, self.policy, int(run_seeds[1]),
                                    **backend_options(g, self.backend_name))
        v = preset.verifier
        self.verifier = MathVerifier(v.timeout_s, v.require_boxed, v.isolation)
        self.store = RolloutStore(preset.learner.retain_steps)
        self.timer = Timer()
        self._prompt_cache: dict[int, list[int]] = {}
        self.learner = GRPOLearner(self.policy, preset.learner, g.temperature, self.store, self.prompt_ids)

    def prompt_ids(self, i: int) -> list[int]:
        ids = self._prompt_cache.get(i)
        if ids is None:
            ids = self._prompt_cache[i] = self.policy.prompt_ids(self.train[i].question)
        return ids

    def features(self, ids: np.ndarray) -> np.ndarray:
        """Prompt features (Environment.features): the current policy's last hidden state
        averaged over each training prompt's tokens (``Policy.prompt_features``), float32."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < len(self.train):
                raise ValueError(f"features asked for prompt {i} outside the training pool of {len(self.train)}")
        start = time.perf_counter()
        out = self.policy.prompt_features([self.prompt_ids(i) for i in ids])
        self.timer.add("time_features_s", time.perf_counter() - start)
        return out

    def feature_tokens(self, ids: np.ndarray) -> int:
        """Prompt tokens ``features(ids)`` runs through the model (the ledger's feature_tokens)."""
        return sum(len(self.prompt_ids(int(i))) for i in ids)

    # ------------------------------------------------------------------ checkpoint hooks
    def save(self, folder: Path) -> None:
        if self.learner.world > 1:
            raise ConfigError("checkpoints are not written under learner.fsdp with several ranks (the model is "
                              "sharded); run with --checkpoint-every 0")
        state = {
            "preset": P.to_dict(self.preset), "seed": self.seed,
            "model": self.policy.model.state_dict(), "learner": self.learner.state_dict(),
            "backend": self.backend.state_dict(), "store": self.store.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(state, Path(folder) / "real_env.pt")

    def load(self, folder: Path) -> None:
        state = torch.load(Path(folder) / "real_env.pt", map_location="cpu", weights_only=False)
        if state["preset"] != P.to_dict(self.preset) or state["seed"] != self.seed:
            raise ConfigError(f"checkpoint in {folder} was made with another preset or seed; use another folder")
        self.policy.model.load_state_dict(state["model"])
        self.learner.load_state_dict(state["learner"])
        self.backend.load_state_dict(state["backend"])
        self.store.load_state_dict(state["store"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.backend.update_weights()


def load_data(preset: P.Preset) -> tuple[list[Problem], list[Problem], list]:
    d = preset.data
    common = dict(question_field=d.question_field, answer_field=d.answer_field, skip_malformed=d.skip_malformed,
                  seed=d.seed, options=d.options)
    if d.train == "arith" and eval_sources(preset) == ["arith"]:
        # the held-out set is its own draw, the same whatever the pool's size (so shipped
        # weights warmed up without it stay clean); the pool is drawn apart and never holds it
        n_train, n_eval = d.train_size or 2000, d.eval_size or 200
        options = {"levels": d.arith_levels, "template": d.arith_template}
        held_out, report = load_problems("arith", size=n_eval, seed=d.seed + 1, options=options)
        banned = {p.question for p in held_out}
        pool, _ = load_problems("arith", size=n_train + n_eval, seed=d.seed, options=options)
        pool = [p for p in pool if p.question not in banned][:n_train]
        return pool, [replace(p, source="arith") for p in held_out], [report]
    options = {"levels": d.arith_levels, "template": d.arith_template}
    train, r1 = load_problems(d.train, split=d.train_split, size=d.train_size,
                              **{**common, "options": options if d.train == "arith" else d.options})
    evals, reports = [], [r1]
    for source in eval_sources(preset):
        part, r2 = load_problems(source, split=d.eval_split, size=d.eval_size,
                                 **{**common, "seed": d.seed + 1,
                                    "options": options if source == "arith" else d.options})
        evals += [replace(p, source=source) for p in part]
        reports.append(r2)
    return train, evals, reports


def eval_sources(preset: P.Preset) -> list[str]:
    """The held-out benchmarks: ``data.eval`` as a list."""
    e = preset.data.eval
    return [e] if isinstance(e, str) else list(e)


def warmup_problems(preset: P.Preset, held_out: list[Problem]) -> list[Problem]:
    """Problems for the supervised warm-up: a fresh arith draw, the held-out questions removed."""
    d, m = preset.data, preset.model
    if d.train != "arith":
        raise ConfigError("model.warmup_steps > 0 is supported with the arith data only")
    problems, _ = load_problems("arith", size=m.warmup_size, seed=d.seed + 1000,
                                options={"levels": d.arith_levels, "template": d.arith_template})
    banned = {p.question for p in held_out}
    return [p for p in problems if p.question not in banned]


def make_env(scenario: str = "tiny-arith", seed: int = 0, **overrides) -> Environment:
    """A real environment for ``scenario`` (a preset name or a TOML file); see real.presets for
    ``overrides``."""
    preset = P.get_preset(scenario, **overrides)
    world = RealWorld(preset, seed)
    pool = np.arange(len(world.train))
    # what the data says of each prompt (the arith level; NaN where a dataset has none)
    difficulty = np.array([np.nan if p.difficulty is None else p.difficulty for p in world.train])
    return Environment(
        name="real", scenario=preset.name, sampler=RealSampler(world), learner=RealLearner(world),
        evaluator=RealEvaluator(world), prompt_ids=pool, epoch_order=lambda rng: rng.permutation(pool),
        train_batch=preset.run.train_batch, group_size=preset.run.group_size,
        info={"steps": preset.run.steps, "eval_every": preset.run.eval_every, "world": world,
              "preset": preset}, save=world.save, load=world.load,
        describe=lambda ids: {"difficulty": difficulty[np.asarray(ids)]},
        features=PromptFeatures(world.features, world.feature_tokens))
