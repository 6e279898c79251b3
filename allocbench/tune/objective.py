"""The tuning objective: one run scored against a target, and the Optuna objective over seeds.

Objective (one number per trial, the mean over the study's seeds 0..K-1, every trial on the
same seeds):

- ``rollouts`` (default, minimised): rollouts a run spends until its evaluated accuracy first
  reaches the target (``allocbench.metrics.reaches``: the tolerance used everywhere). A run
  stops as soon as it does. Each run may spend at most ``CAP_FACTOR`` x R rollouts (R = grpo's
  rollouts over the same steps) and ``steps`` steps; a run that never reaches the target
  scores ``cap x (2 - progress)``, where ``progress`` in [0, 1) is how far its best accuracy
  got from the before-training accuracy to the target. So every miss scores worse than every
  hit (a hit costs at most ``cap``), and of two misses the one that came closer scores better.
  The target defaults to grpo's peak seed-mean accuracy with the same scenario, steps and
  seeds; it is computed once, when the study is created, and kept in the study's user
  attributes, so resumed studies and other workers use the same one.
- ``auc`` (maximised): the area under accuracy vs cumulative rollouts from 0 to R divided by
  R, i.e. the mean accuracy over an equal budget of R rollouts. Each run stops before it would
  spend more than R (and after at most ``AUC_STEP_FACTOR`` x steps); the curve is linear
  between evaluations and held flat after the last one.

Note that the seed mean of per-seed rollouts-to-target differs slightly from the
rollouts-to-target of the seed-mean curve that ``allocbench compare`` reports; it is used here
because every seed can stop, be penalised and be pruned on its own.

Pruning. Every run reports, at checkpoints ``j x cap / GRID`` rollouts (``j x R / GRID`` for
auc), the mean over the seeds run so far of its *progress* at that spend (rollouts: the
share of the way from the start accuracy to the target that its best accuracy covered;
auc: the partial area / R). Trial step ``k x (GRID + 1) + j`` carries, for seed number k,
``K - k - progress`` (rollouts) or ``k + progress`` (auc), so the value only improves along
the steps: Optuna's MedianPruner, which judges a trial by its best value so far, then compares
trials at equal spend of the same seed, and a trial whose progress is below the median of the
finished trials' is stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from allocbench.errors import AllocbenchError, DataTooHard
from allocbench.metrics import reaches
from allocbench.runner import RunConfig, run
from allocbench.strategy import Strategy, make_strategy, strategy_class
from allocbench.tune.config import AUC_STEP_FACTOR, CAP_FACTOR, GRID, REFERENCE, TuneConfig
from allocbench.tune.interrupts import Interrupts


class _Reached(Exception):
    """Raised from on_step to end a run that reached its target."""


@dataclass
class Reference:
    """grpo's runs on the seeds a score is taken on."""

    target: float  # the target accuracy (given, or grpo's peak seed-mean accuracy)
    rollouts: float  # R: grpo's rollouts over the steps (seed mean)
    start_acc: dict  # seed -> accuracy before training (the same for every strategy)

    def to_json(self) -> dict:
        return {"target": self.target, "rollouts": self.rollouts,
                "start_acc": {str(k): v for k, v in self.start_acc.items()}}

    @classmethod
    def from_json(cls, d: dict) -> Reference:
        return cls(d["target"], d["rollouts"], {int(k): v for k, v in d["start_acc"].items()})


def reference(config: TuneConfig, seeds: list[int], scenario: str | None = None) -> Reference:
    from allocbench.metrics import default_target

    steps = config.resolved_steps(scenario)
    runs = [run(config.make_env(seed, scenario), make_strategy(REFERENCE),
                RunConfig(steps=steps, seed=seed, eval_every=config.eval_every,
                          train_batch=config.train_batch, group_size=config.group_size))
            for seed in seeds]
    table = pd.concat(runs, ignore_index=True)
    target = config.target if config.target is not None else default_target(table, REFERENCE)
    start = {int(r["seed"].iloc[0]): float(r["eval_acc"].iloc[0]) for r in runs}
    return Reference(float(target), float(np.mean([r["cum_rollouts"].iloc[-1] for r in runs])), start)


@dataclass
class SeedResult:
    seed: int
    value: float  # the objective of this run
    reached: bool  # rollouts objective: reached the target
    rollouts: int  # rollouts spent when the run ended
    steps: int  # steps it ran
    progress: np.ndarray  # GRID + 1 checkpoint progress values in [0, 1]
    problem: str | None = None


class SeedRun:
    """Follows one run's evaluations against the target and the rollouts checkpoints."""

    def __init__(self, config: TuneConfig, ref: Reference, seed: int,
                 on_checkpoint: Callable[[SeedRun], None] | None = None):
        self.seed = seed
        self.objective = config.objective
        self.target = ref.target
        self.start = ref.start_acc[seed]
        self.span = (CAP_FACTOR if config.minimise else 1.0) * ref.rollouts
        self.cap = self.span
        self.checkpoints = np.linspace(0, self.span, GRID + 1)
        self.xs, self.ys = [0.0], [self.start]
        self.progress: list[float] = []
        self.rollouts = 0
        self.steps = 0
        self.reached_at: float | None = None
        self.on_checkpoint = on_checkpoint

    def on_step(self, row: dict) -> None:
        self.rollouts, self.steps = int(row["cum_rollouts"]), int(row["step"])
        acc = row["eval_acc"]
        if acc != acc:  # not an evaluation step
            return
        self.xs.append(float(row["cum_rollouts"]))
        self.ys.append(float(acc))
        before = len(self.progress)
        while len(self.progress) <= GRID and self.checkpoints[len(self.progress)] <= self.xs[-1]:
            self.progress.append(self.progress_at(self.checkpoints[len(self.progress)]))
        if self.objective == "rollouts" and reaches(acc, self.target):
            self.reached_at = float(row["cum_rollouts"])
            raise _Reached
        if len(self.progress) > before and self.on_checkpoint is not None:
            self.on_checkpoint(self)

    def progress_at(self, x: float) -> float:
        xs, ys = np.asarray(self.xs), np.asarray(self.ys)
        if self.objective == "rollouts":
            if self.target <= self.start:
                return 1.0
            best = ys[xs <= x].max()
            return float(np.clip((best - self.start) / (self.target - self.start), 0.0, 1.0))
        return _area(xs, ys, x) / self.span

    def finish(self, problem: str | None = None) -> SeedResult:
        while len(self.progress) <= GRID:  # the curve is flat after the run ended
            self.progress.append(self.progress_at(self.checkpoints[len(self.progress)]))
        if self.objective == "auc":
            value, reached = self.progress[-1], False
        elif self.reached_at is not None:
            value, reached = self.reached_at, True
        else:
            value, reached = self.cap * (2.0 - self.progress_at(math.inf)), False
        return SeedResult(self.seed, float(value), reached, self.rollouts, self.steps,
                          np.array(self.progress), problem)


def _area(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """Area under the piecewise-linear curve (xs, ys) from 0 to x, flat after the last point."""
    if x <= 0:
        return 0.0
    inside = xs < x
    px = np.append(xs[inside], x)
    py = np.append(ys[inside], np.interp(x, xs, ys))
    return float(np.sum((py[1:] + py[:-1]) / 2 * np.diff(px)))


def run_seed(config: TuneConfig, strategy: Strategy, seed: int, ref: Reference,
             scenario: str | None = None, on_checkpoint=None) -> SeedResult:
    """One run of ``strategy`` scored by ``config.objective`` against ``ref``."""
    tracker = SeedRun(config, ref, seed, on_checkpoint)
    steps = config.resolved_steps(scenario)
    if config.minimise:
        cfg = RunConfig(steps=steps, budget=int(tracker.cap))
    else:
        cfg = RunConfig(steps=AUC_STEP_FACTOR * steps, budget=int(ref.rollouts))
    cfg = dataclasses.replace(cfg, seed=seed, eval_every=config.eval_every,
                              train_batch=config.train_batch, group_size=config.group_size)
    problem = None
    try:
        run(config.make_env(seed, scenario), strategy, cfg, on_step=tracker.on_step)
        if config.minimise and tracker.steps < cfg.steps:
            problem = f"spent its budget of {cfg.budget:,} rollouts at step {tracker.steps}"
    except _Reached:
        pass
    except DataTooHard as e:  # the run stopped; it is scored on what it reached
        problem = str(e)
    return tracker.finish(problem)


def score(config: TuneConfig, strategy: Strategy, seeds: list[int], ref: Reference,
          scenario: str | None = None) -> list[SeedResult]:
    return [run_seed(config, strategy, seed, ref, scenario) for seed in seeds]


class Objective:
    """Optuna objective: the strategy's search space, scored over the study's seeds."""

    def __init__(self, config: TuneConfig, ref: Reference):
        self.config, self.ref = config, ref
        self.cls = strategy_class(config.strategy)

    def __call__(self, trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            return self._score(trial)
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the trial is failed and re-run on resume
            trial.set_user_attr("interrupted", True)
            raise
        except AllocbenchError as e:  # the trial fails, the study goes on
            trial.set_user_attr("error", str(e))
            raise

    def _score(self, trial) -> float:
        import optuna

        params = self.cls.search_space(trial)
        strategy = make_strategy(self.config.strategy, **params)
        K = self.config.seeds
        curves: list[np.ndarray] = []  # progress at the checkpoints of the seeds run so far
        results: list[SeedResult] = []
        for k, seed in enumerate(range(K)):
            done = [0]  # checkpoints of this seed already reported

            def report(tracker: SeedRun | SeedResult, final: bool = False) -> None:
                Interrupts.check()  # a safe point: no storage write is under way
                progress = tracker.progress
                for j in range(done[0], len(progress)):
                    mean = (sum(c[j] for c in curves) + progress[j]) / (k + 1)
                    trial.report(K - k - mean if self.config.minimise else k + mean, k * (GRID + 1) + j)
                if not final and len(progress) > done[0] and trial.should_prune():
                    trial.set_user_attr("pruned_at", f"seed {seed}, {tracker.rollouts} rollouts")
                    raise optuna.TrialPruned()
                done[0] = len(progress)

            result = run_seed(self.config, strategy, seed, self.ref, on_checkpoint=report)
            report(result, final=True)
            curves.append(result.progress)
            results.append(result)
        value = float(np.mean([r.value for r in results]))
        trial.set_user_attr("seed_values", [r.value for r in results])
        trial.set_user_attr("seeds_reached", sum(r.reached for r in results))
        trial.set_user_attr("rollouts_spent", float(np.mean([r.rollouts for r in results])))
        problems = [f"seed {r.seed}: {r.problem}" for r in results if r.problem]
        if problems:
            trial.set_user_attr("problems", "; ".join(problems))
        return value
