"""The ledger: the only place rollouts, tokens and generation rounds are counted.

Strategies never count their own spending; they call the sampler through the ledger, which
refuses any request that would overspend the run's budget before a single rollout is drawn.
Prompt features (``features``), where the environment has them, go through the ledger too:
computing them is not free in a real environment (a forward pass of the prompt), so the prompts
and prompt tokens they cost are counted apart from the rollouts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Callable, Mapping

import numpy as np

from allocbench.errors import BudgetExhausted, ConfigError
from allocbench.groups import GroupLog
from allocbench.protocols import EarlyStop, Outcome, PromptFeatures, Sampler


@dataclass
class Spend:
    """Counters over some span (a step, or the whole run)."""

    rollouts: int = 0
    pilot_rollouts: int = 0  # the part of ``rollouts`` spent on screening requests
    tokens: int = 0
    rounds: int = 0
    prompts: int = 0  # prompt requests served (a prompt asked twice counts twice)
    feature_prompts: int = 0  # prompts whose features were computed (asked twice counts twice)
    feature_tokens: int = 0  # prompt tokens run through a model for those features (0 in sim)

    def add(self, other: Spend) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Ledger:
    """Wraps a ``Sampler``; counts every generated rollout exactly once."""

    def __init__(self, sampler: Sampler, budget: int | None = None, log: GroupLog | None = None,
                 features: Callable[[np.ndarray], np.ndarray] | None = None):
        if budget is not None and budget <= 0:
            raise ConfigError(f"rollout budget must be positive, got {budget}")
        self._sampler = sampler
        self._can_stop = "stop" in inspect.signature(sampler.sample).parameters  # EarlyStop
        self._features = features  # the environment's prompt features (Environment.features)
        self.budget = budget
        self.log = log  # the per-group log, when the run keeps one
        self.total = Spend()
        self.step = Spend()

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.total.rollouts

    def begin_step(self, step: int = 0) -> None:
        self.step = Spend()
        if self.log is not None:
            self.log.begin_step(step)

    def sample(
        self, requests: Mapping[int, int], pilot: Mapping[int, int] | None = None,
        stop: EarlyStop | None = None,
    ) -> dict[int, Outcome]:
        """One generation round. ``pilot`` requests go into the same round but are counted as
        screening rollouts; ``stop`` stops the round's rollouts early (their tokens are counted
        as generated, up to where each stopped). Returns the outcomes by prompt id."""
        pilot = pilot or {}
        if stop is not None and not self._can_stop:
            raise ConfigError(f"early stopping of rollouts (EarlyStop) is not supported by this environment's "
                              f"sampler ({type(self._sampler).__name__})")
        both = {**requests, **pilot}
        if len(both) != len(requests) + len(pilot):
            raise ValueError("a prompt cannot be both a pilot and a main request in one round")
        if not both:
            raise ValueError("empty generation round")
        if min(both.values()) <= 0:
            raise ValueError("every request must ask for at least one rollout")
        asked = sum(both.values())
        if self.budget is not None and self.total.rollouts + asked > self.budget:
            raise BudgetExhausted(
                f"request of {asked} rollouts exceeds the remaining budget of {self.remaining}"
            )
        outcomes = self._sampler.sample(both) if stop is None else self._sampler.sample(both, stop=stop)
        spend = Spend(
            rollouts=sum(o.n for o in outcomes),
            pilot_rollouts=sum(pilot.values()),
            tokens=int(np.concatenate([o.tokens for o in outcomes]).sum()),
            rounds=1,
            prompts=len(both),
        )
        if spend.rollouts != asked:
            raise RuntimeError(f"sampler returned {spend.rollouts} rollouts for {asked} asked")
        if np.concatenate([o.rollout_ids for o in outcomes]).min() < 0:
            raise RuntimeError("sampler returned rollouts without ids (Outcome.rollout_ids)")
        self.step.add(spend)
        self.total.add(spend)
        if self.log is not None:
            self.log.record(outcomes, set(pilot), self.step.rounds)
        return {o.prompt_id: o for o in outcomes}

    def features(self, ids, by: str = "this strategy") -> np.ndarray:
        """The features of prompts ``ids`` (float array, one row per id), counted in
        ``feature_prompts`` and ``feature_tokens``. ``by`` names who asks, for the error raised
        when the environment has no features."""
        if self._features is None:
            raise ConfigError(f"{by} needs prompt features, which this run does not have: the environment "
                              "provides none (Environment.features is None) or they were not passed to "
                              "Ledger(features=...)")
        ids = np.asarray(ids, dtype=np.int64)
        out = np.asarray(self._features(ids))
        if out.ndim != 2 or len(out) != len(ids):
            raise RuntimeError(f"prompt features of shape {out.shape} for {len(ids)} prompts; expected ({len(ids)}, d)")
        tokens = int(self._features.tokens(ids)) if isinstance(self._features, PromptFeatures) else 0
        spend = Spend(feature_prompts=len(ids), feature_tokens=tokens)
        self.step.add(spend)
        self.total.add(spend)
        return out
