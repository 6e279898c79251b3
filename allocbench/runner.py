"""The one training loop, shared by sim and real."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from allocbench.checkpoint import Checkpoint
from allocbench.data import CandidateStream
from allocbench.errors import BudgetExhausted, ConfigError, DataTooHard
from allocbench.groups import GroupLog
from allocbench.ledger import Ledger
from allocbench.protocols import Environment, Outcome, Sampler
from allocbench.schema import COLUMNS
from allocbench.strategy import StepContext, Strategy

EVAL_COLUMNS = [c for c in COLUMNS if c.startswith("eval_")]


@dataclass(frozen=True)
class RunConfig:
    """How long and at what shape one run trains; None takes the environment's default."""

    steps: int = 200
    seed: int = 0
    train_batch: int | None = None  # B, prompts per step
    group_size: int | None = None  # n, the baseline's rollouts per prompt
    eval_every: int = 10  # steps between evaluations (step 0 and the last are always evaluated)
    budget: int | None = None  # total rollouts; the run ends before a step would overspend

    def __post_init__(self):
        for name in ("steps", "eval_every", "train_batch", "group_size", "budget"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")


class Allocation:
    """One run's allocation side: the ledger around the environment's sampler, the candidate
    stream, the strategy bound to the run's B and n with its memory and random stream, and the
    results-table row of each step. ``run`` drives one; so does a host that owns its training
    loop (real/trl: TRL's GRPOTrainer), so both draw prompts, spend, count and report alike."""

    def __init__(self, sampler: Sampler, prompt_ids: np.ndarray,
                 epoch_order: Callable[[np.random.Generator], np.ndarray], strategy: Strategy,
                 train_batch: int, group_size: int, seed: int, *, env: str, scenario: str,
                 budget: int | None = None, groups: GroupLog | None = None,
                 describe: Callable[[np.ndarray], dict] | None = None,
                 features: Callable[[np.ndarray], np.ndarray] | None = None):
        data_rng, self.rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        self.ledger = Ledger(sampler, budget, log=groups, features=features)
        self.candidates = CandidateStream(prompt_ids, epoch_order, data_rng)
        self.memory: dict = {}
        self.train_batch, self.group_size = train_batch, group_size
        self.strategy = strategy.bind(train_batch, group_size)
        self.hps = {f"hp_{k}": v for k, v in self.strategy.hyper_parameters().items()}
        self.fixed = dict(env=env, scenario=scenario, strategy=self.strategy.name, seed=seed)
        if groups is not None:
            groups.start(self.fixed, describe)

    def collect(self, step: int, last_update: Mapping[str, Any]) -> list[Outcome]:
        """Step ``step``'s groups to train on: the ledger's step counts restart, the strategy
        spends through it and sees ``last_update`` (the learner's previous report) read-only."""
        self.ledger.begin_step(step)
        ctx = StepContext(step, self.train_batch, self.group_size, self.ledger, self.candidates, self.memory,
                          self.rng, MappingProxyType(dict(last_update)))
        return self.strategy.collect(ctx)

    def row(self, step: int, trained: list[Outcome], learned: Mapping[str, Any], scores: Mapping[str, Any],
            wall_s: float) -> dict:
        """The table row of step ``step`` (0: before training), read before the next ``collect``:
        the ledger's counts, the trained groups' statistics, the evaluator's ``scores`` (NaN
        where none), the hyper-parameters and the learner's report as ``learn_*``."""
        evals = {k: scores.get(k, float("nan")) for k in EVAL_COLUMNS}
        evals.update((k, v) for k, v in scores.items() if k.startswith("eval_"))
        ledger = self.ledger
        return {**self.fixed, "step": step, "train_batch": self.train_batch, "group_size": self.group_size,
                "epoch": self.candidates.epoch, "cum_rollouts": ledger.total.rollouts,
                "cum_tokens": ledger.total.tokens, "step_rollouts": ledger.step.rollouts,
                "pilot_rollouts": ledger.step.pilot_rollouts, "feature_prompts": ledger.step.feature_prompts,
                "feature_tokens": ledger.step.feature_tokens, **group_stats(trained), "rounds": ledger.step.rounds,
                "prompts_seen": ledger.step.prompts, **evals, "wall_s": wall_s, **self.hps,
                **{f"learn_{k}": v for k, v in learned.items()}}


def run(
    env: Environment,
    strategy: Strategy,
    config: RunConfig = RunConfig(),
    on_step: Callable[[dict], None] | None = None,
    checkpoint: Checkpoint | None = None,
    groups: GroupLog | None = None,
) -> pd.DataFrame:
    """Train with ``strategy`` on ``env``; return one row per step (step 0 = before training).

    ``on_step(row)`` is called after every step (progress bars, Optuna pruning); an exception
    it raises ends the run. A run whose budget runs out mid-step ends after its last full step.
    With ``checkpoint``, the run saves its state every ``checkpoint.every`` steps and, when the
    folder already holds a checkpoint of the same run, resumes from it. With ``groups`` (a fresh
    ``GroupLog``), every generation round is logged there too; ``groups.table()`` reads it.
    """
    B = config.train_batch or env.train_batch
    n = config.group_size or env.group_size
    alloc = Allocation(env.sampler, env.prompt_ids, env.epoch_order, strategy, B, n, config.seed, env=env.name,
                       scenario=env.scenario, budget=config.budget, groups=groups, describe=env.describe,
                       features=env.features)
    fingerprint = {**alloc.fixed, **alloc.hps, "train_batch": B, "group_size": n, "budget": config.budget,
                   "eval_every": config.eval_every}
    rows: list[dict] = []
    saved = checkpoint.load(fingerprint, env.load) if checkpoint else None
    if saved is not None:
        rows, alloc.memory = saved["rows"], saved["memory"]
        if groups is not None:
            groups.restore(saved["groups"])
        alloc.ledger.total = saved["ledger"]
        alloc.candidates.restore(saved["candidates"])
        alloc.rng.bit_generator.state = saved["strategy_rng"]
    start = time.perf_counter() - (rows[-1]["wall_s"] if rows else 0.0)

    def row(step: int, trained: list[Outcome], learned: dict, evaluate: bool) -> dict:
        scores = env.evaluator.evaluate() if evaluate else {}
        return alloc.row(step, trained, learned, scores, time.perf_counter() - start)

    def save(step: int) -> None:
        checkpoint.save(step, dict(fingerprint=fingerprint, rows=rows, memory=alloc.memory,
                                   ledger=alloc.ledger.total, candidates=alloc.candidates.state(),
                                   strategy_rng=alloc.rng.bit_generator.state,
                                   groups=groups.state() if groups is not None else None), env.save)

    if not rows:
        rows.append(row(0, [], {}, evaluate=True))
    for step in range(len(rows), config.steps + 1):
        # rebuilt from the table's last row, so a resumed run sees what it saw before stopping
        last_update = {k[len("learn_"):]: v for k, v in rows[-1].items() if k.startswith("learn_")}
        try:
            trained = alloc.collect(step, last_update)
        except BudgetExhausted:
            break
        except DataTooHard as e:
            e.table = results_table(rows)
            raise
        learned = env.learner.update(trained)
        if groups is not None:
            groups.trained(trained)
        last = step == config.steps
        rows.append(row(step, trained, learned, evaluate=last or step % config.eval_every == 0))
        if checkpoint is not None and (last or step % checkpoint.every == 0):
            save(step)
        if on_step is not None:
            on_step(rows[-1])
    return results_table(rows)


def group_stats(groups: list[Outcome]) -> dict:
    """The per-step columns computed from the trained groups, vectorised over groups."""
    if not groups:
        return dict(trained_rollouts=0, reused_rollouts=0, prompts_trained=0,
                    zero_var_groups=0, train_reward=float("nan"), group_reward_var=float("nan"))
    rewards = np.concatenate([g.rewards for g in groups])
    starts = np.cumsum([0] + [g.n for g in groups[:-1]])
    sizes = np.diff(np.append(starts, len(rewards)))
    means = np.add.reduceat(rewards, starts) / sizes
    variances = np.add.reduceat(rewards**2, starts) / sizes - means**2
    spread = np.maximum.reduceat(rewards, starts) - np.minimum.reduceat(rewards, starts)
    aborted = sum(int((g.weights == 0).sum()) for g in groups if g.weights is not None)  # early-stopped
    return dict(trained_rollouts=len(rewards) - aborted, reused_rollouts=sum(g.reused for g in groups),
                prompts_trained=len(groups), zero_var_groups=int((spread == 0).sum()),
                train_reward=float(rewards.mean()), group_reward_var=float(variances.mean()))


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (``Allocation.row``) as a results table, columns in the schema's order."""
    table = pd.DataFrame(rows)
    hp_cols = [c for c in table.columns if c.startswith("hp_")]
    extra = [c for c in table.columns if c.startswith("learn_") or c.startswith("eval_") and c not in COLUMNS]
    return table[list(COLUMNS) + hp_cols + extra]
