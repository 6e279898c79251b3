"""The simulated environment: a pool of prompts whose pass rates evolve under training.

Model. Prompt i has a logit ``b_i + a_i . c(s)``: an offset ``b_i`` (its difficulty), loadings
``a_i >= 0`` on ``n_skills`` latent skills, and the shared skill vector ``s`` passed through
``c(s) = cap * tanh(s / cap)`` so skill saturates. Its pass rate is the sigmoid of the logit.
A GRPO step on groups g with n_g rollouts and reward std sigma_g moves ``s`` along
``sum_g n_g sigma_g a_g / N`` (the group-normalised advantage summed against d log p / d logit is
n_g sigma_g: zero for all-0 or all-1 groups, largest at p = 1/2; N, the number of samples in
the batch, dilutes it as a token-mean loss does), times the chain rule through c, plus noise.
Training on one prompt moves every prompt that shares its skills. The held-out eval set is
drawn from the same distribution and scored as expected pass@1. Rollout lengths are
log-normal, longer when wrong, capped at ``max_tokens``.

Everything is vectorised numpy over prompts and rollouts; a seed fixes the pool, the eval set,
every reward and length drawn and every update's noise.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import numpy as np

from allocbench.metrics import solved_shares
from allocbench.protocols import Environment, Outcome
from sim.scenarios import Scenario, get_scenario


class SimWorld:
    """The state the sampler, learner and evaluator share: prompts and the skill vector."""

    def __init__(self, sc: Scenario, seed: int):
        pool_rng, self.rollout_rng, self.update_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence([seed, 7]).spawn(3))
        self.sc = sc
        total = sc.pool_size + sc.eval_size
        weights, means, stds = (np.array(col, dtype=float) for col in zip(*sc.offsets))
        component = pool_rng.choice(len(weights), size=total, p=weights / weights.sum())
        self.offset = pool_rng.normal(means[component], stds[component])
        self.loading = sc.loading_scale * pool_rng.dirichlet(
            np.full(sc.n_skills, sc.loading_concentration), size=total)
        self.skill = np.zeros(sc.n_skills)
        self.eval_ids = np.arange(sc.pool_size, total)
        self.drawn = 0  # rollouts sampled so far: the next rollout's id

    def save(self, folder: Path) -> None:
        state = dict(skill=self.skill, rollout_rng=self.rollout_rng.bit_generator.state,
                     update_rng=self.update_rng.bit_generator.state, drawn=self.drawn)
        (folder / "world.pkl").write_bytes(pickle.dumps(state))

    def load(self, folder: Path) -> None:
        state = pickle.loads((folder / "world.pkl").read_bytes())
        self.skill = state["skill"]
        self.rollout_rng.bit_generator.state = state["rollout_rng"]
        self.update_rng.bit_generator.state = state["update_rng"]
        self.drawn = state.get("drawn", 0)

    def pass_rate(self, ids: np.ndarray) -> np.ndarray:
        capped = self.sc.skill_cap * np.tanh(self.skill / self.sc.skill_cap)
        return 1.0 / (1.0 + np.exp(-(self.offset[ids] + self.loading[ids] @ capped)))


class SimSampler:
    def __init__(self, world: SimWorld):
        self.world = world

    def sample(self, requests: Mapping[int, int]) -> list[Outcome]:
        w, sc, rng = self.world, self.world.sc, self.world.rollout_rng
        ids = np.fromiter(requests.keys(), dtype=np.int64, count=len(requests))
        counts = np.fromiter(requests.values(), dtype=np.int64, count=len(requests))
        if ids.min() < 0 or ids.max() >= sc.pool_size:
            raise ValueError("request for a prompt outside the training pool")
        p = np.repeat(w.pass_rate(ids), counts)
        rewards = (rng.random(len(p)) < p).astype(np.float64)
        mean_len = np.where(rewards > 0, sc.len_correct, sc.len_wrong)
        # log-normal with the given mean: mu = log(mean) - sigma^2 / 2
        lengths = mean_len * np.exp(sc.len_sigma * rng.standard_normal(len(p)) - sc.len_sigma**2 / 2)
        tokens = np.minimum(np.rint(lengths), sc.max_tokens).astype(np.int64)
        ends = np.cumsum(counts).tolist()
        # rollout ids: a running count of the rollouts drawn (no random draw)
        rollout_ids = np.arange(w.drawn, w.drawn + len(p), dtype=np.int64)
        w.drawn += len(p)
        # slicing views per prompt; np.split costs several times more for thousands of pieces
        return [Outcome(i, rewards[a:b], tokens[a:b], 0, rollout_ids[a:b])
                for i, a, b in zip(ids.tolist(), [0] + ends[:-1], ends)]


class SimLearner:
    def __init__(self, world: SimWorld):
        self.world = world

    def update(self, groups: list[Outcome]) -> dict:
        w, sc = self.world, self.world.sc
        if not groups:
            return {"signal": 0.0}
        ids = np.fromiter((g.prompt_id for g in groups), dtype=np.int64, count=len(groups))
        n = np.fromiter((g.n for g in groups), dtype=np.int64, count=len(groups))
        mean = np.add.reduceat(np.concatenate([g.rewards for g in groups]), np.cumsum(n) - n) / n
        weight = n * np.sqrt(mean * (1 - mean)) / n.sum()
        direction = weight @ w.loading[ids]
        chain = 1.0 / np.cosh(w.skill / sc.skill_cap) ** 2
        noise = sc.noise * w.update_rng.standard_normal(sc.n_skills) / np.sqrt(len(groups))
        w.skill += sc.lr * (direction * chain + noise)
        return {"signal": float(weight.sum())}


class SimEvaluator:
    def __init__(self, world: SimWorld):
        self.world = world

    def evaluate(self) -> dict:
        p = self.world.pass_rate(self.world.eval_ids)
        return {"eval_acc": float(p.mean()), **solved_shares(p)}


def make_env(scenario: str = "default", seed: int = 0, **overrides) -> Environment:
    """A fresh simulated environment; ``overrides`` replace scenario parameters."""
    sc = get_scenario(scenario, **overrides)
    world = SimWorld(sc, seed)
    pool = np.arange(sc.pool_size)
    return Environment(
        name="sim", scenario=sc.name, sampler=SimSampler(world), learner=SimLearner(world),
        evaluator=SimEvaluator(world), prompt_ids=pool,
        epoch_order=lambda rng: rng.permutation(pool),
        train_batch=sc.train_batch, group_size=sc.group_size,
        info={"steps": sc.steps, "world": world}, save=world.save, load=world.load,
        describe=lambda ids: {"pass_rate": world.pass_rate(ids)})
