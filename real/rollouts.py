"""The rollout store: the generated text behind every ``Outcome``, keyed by rollout id.

Strategies see only rewards, token counts and rollout ids (``Outcome``); they merge outcomes
(pilot + commit), keep subsets (down-sampling) and add cached answers (``reused``), and the ids
follow (``Outcome.merge`` concatenates them, a subset keeps ``rollout_ids[keep]``, a cached answer
carries the id of the rollout it came from). The sampler stores every rollout it generates here
(``add`` gives each a fresh id, which goes into its ``Outcome``); the learner looks a group's
rollouts up by id (``get``), so it trains on exactly the rollouts the strategy chose.

Retention, in training steps (runner steps: one ``end_step`` per learner update, however many
optimizer steps ``learner.mini_batches`` makes of it). A rollout generated during step s stays
usable by the updates of steps s .. s + ``retain_steps``; ``end_step`` drops it after that,
unless it is a prompt's newest correct answer. Why these two rules cover what strategies keep:

- a strategy that holds rollouts for later steps bounds their age: Pilot-Commit's pilot buffer
  by its ``max_staleness`` (4; tuned over 0..8), SPEED's queue of accepted prompts by its
  length (2 steps at its defaults). The default ``retain_steps`` = 16 is twice the largest
  staleness any registered strategy tunes over; tests check that every registered strategy's
  declared staleness bound fits in it and, on the simulator, that none trains an older
  rollout. A run with a larger staleness needs ``--env-set learner.retain_steps=...`` at least as
  large; otherwise the first commit of a pilot older than that stops with an error naming the
  setting (never a silent substitute).
- a cache of correct answers (AR3PO's response reuse) keeps the latest correct answer of each
  prompt for as long as the run lasts: the store keeps each prompt's newest correct rollout
  whatever its age (one per prompt at most), and drops a kept one when a newer correct rollout
  of its prompt replaces it.

Counting steps, not optimizer versions, keeps the horizon independent of ``mini_batches``
(16 versions were only 4 steps at mini_batches = 4, below pilot_commit's tuned staleness).
Memory: every rollout of the last ``retain_steps`` steps (token ids and log-probs, 8-12 bytes a
token) stays in host memory; at the paper's scale (~25k rollouts of a few thousand tokens a
round) that is several GB, which a smaller ``retain_steps`` (>= the run's staleness) lowers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass
class Rollout:
    prompt_id: int
    ids: np.ndarray  # completion token ids
    logprobs: np.ndarray  # behaviour log-probabilities at generation time
    reward: float
    version: int  # learner optimizer steps taken when it was generated
    finished: bool
    id: int = -1  # the store's id (set by RolloutStore.add)
    step: int = -1  # training steps completed when it was generated (set by RolloutStore.add)


class RolloutStore:
    def __init__(self, retain_steps: int = 16):
        if retain_steps < 0:
            raise ValueError(f"retain_steps must be >= 0; got {retain_steps}")
        self.retain_steps = retain_steps
        self.step = 0  # training steps completed (end_step calls)
        self.next_id = 0
        self._rows: dict[int, Rollout] = {}
        self._by_step: dict[int, list[int]] = defaultdict(list)  # step -> ids generated during it
        self._newest_correct: dict[int, int] = {}  # prompt -> id of its newest correct rollout (kept)
        self._released: list[int] = []  # formerly kept correct rollouts, replaced by newer ones

    def add(self, rollouts: list[Rollout]) -> np.ndarray:
        """Store ``rollouts`` under fresh ids (in order); returns the ids."""
        ids = np.arange(self.next_id, self.next_id + len(rollouts), dtype=np.int64)
        for i, r in zip(ids.tolist(), rollouts):
            r.id, r.step = i, self.step
            self._rows[i] = r
            self._by_step[self.step].append(i)
            if r.reward > 0.5:
                old = self._newest_correct.get(r.prompt_id)
                if old is not None:
                    self._released.append(old)
                self._newest_correct[r.prompt_id] = i
        self.next_id += len(rollouts)
        return ids

    def get(self, ids) -> list[Rollout]:
        """The rollouts with these ids, in order; an error names any that is not here."""
        out = []
        for i in np.asarray(ids, dtype=np.int64).tolist():
            r = self._rows.get(i)
            if r is None:
                raise RuntimeError(self._missing(i))
            out.append(r)
        return out

    def _missing(self, i: int) -> str:
        if i < 0:
            return ("a group holds a rollout without an id (Outcome.rollout_ids = -1): outcomes the real "
                    "learner trains on must come from the sampler (merged, subset or reused with their ids)")
        if i >= self.next_id:
            return f"rollout {i} was never generated (the store has given ids 0..{self.next_id - 1})"
        return (f"rollout {i} was dropped from the store: it is older than learner.retain_steps="
                f"{self.retain_steps} training steps (a strategy kept it longer, e.g. a max_staleness above "
                "that); raise learner.retain_steps")

    def end_step(self) -> None:
        """One training step done: drop what no later step may use (see the module docstring)."""
        self.step += 1
        kept = set(self._newest_correct.values())
        for s in [s for s in self._by_step if self.step - s > self.retain_steps]:
            for i in self._by_step.pop(s):
                if i not in kept:
                    self._rows.pop(i, None)
        for i in self._released:  # replaced kept answers past the horizon (younger ones: above, later)
            r = self._rows.get(i)
            if r is not None and i not in kept and self.step - r.step > self.retain_steps:
                del self._rows[i]
        self._released = []

    def rollouts(self, prompt_id: int | None = None) -> list[Rollout]:
        """The stored rollouts (of one prompt), oldest first."""
        return [r for r in self._rows.values() if prompt_id is None or r.prompt_id == prompt_id]

    def __len__(self) -> int:
        return len(self._rows)

    def state_dict(self) -> dict:
        return {"retain_steps": self.retain_steps, "step": self.step, "next_id": self.next_id,
                "rows": dict(self._rows), "by_step": {s: list(v) for s, v in self._by_step.items()},
                "newest_correct": dict(self._newest_correct), "released": list(self._released)}

    def load_state_dict(self, state: dict) -> None:
        if "rows" not in state:
            raise ValueError("this checkpoint's rollout store predates rollout ids; start the run afresh")
        self.retain_steps, self.step, self.next_id = state["retain_steps"], state["step"], state["next_id"]
        self._rows = dict(state["rows"])
        self._by_step = defaultdict(list, {s: list(v) for s, v in state["by_step"].items()})
        self._newest_correct = dict(state["newest_correct"])
        self._released = list(state["released"])
