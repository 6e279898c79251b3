"""The per-group log: one row per (run, step, generation round, prompt) the ledger served.

What a model of training needs to be fitted to a run: which prompts got how many rollouts, how
many were right, in which round and as what (pilot, commit, main), whether they went into an
update, and what the environment knows of the prompt at that moment (``Environment.describe``:
the simulator's true pass rate, a real dataset's difficulty). The ledger records each round
here; the runner marks what was trained after each update.

A row is *trained* when its rollouts went into an update: a pilot drawn at step 3 and committed
at step 5 is marked at step 5 (``trained_step``). Rows of kind ``reused`` are the cached answers
a strategy added to a group (no rollout was generated for them), so the generated rows alone sum
to the run's ``cum_rollouts`` and ``cum_tokens``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from allocbench.protocols import Outcome
from allocbench.schema import GROUP_COLUMNS

class GroupLog:
    """Collects rows as the ledger serves rounds; ``table(...)`` returns them."""

    def __init__(self):
        self._describe: Callable[[np.ndarray], dict] | None = None
        self._chunks: list[dict] = []  # one per round (and one per step's reused answers)
        self._last_kind: dict[int, str] = {}  # prompt -> kind of its last request
        self._rows = 0
        self._trained_step = np.empty(0, dtype=np.int64)  # per row: -1 or the step that trained it
        # rows not trained yet, by their first rollout id (a merged group keeps it)
        self._open_first = np.empty(0, dtype=np.int64)
        self._open_row = np.empty(0, dtype=np.int64)
        self._step_rollouts: list[np.ndarray] = []  # this step's rows: every rollout id ...
        self._step_rows: list[np.ndarray] = []  # ... and its row
        self.step = 0
        self.fixed: dict = {}  # the run's env, scenario, strategy, seed (set by the runner)

    def start(self, fixed: dict, describe: Callable[[np.ndarray], dict] | None) -> None:
        """Called by the runner: the run's fixed columns and its environment's ``describe``."""
        self.fixed, self._describe = fixed, describe

    def state(self) -> dict:
        """What a checkpoint keeps (all but the environment's ``describe``)."""
        return {k: v for k, v in self.__dict__.items() if k != "_describe"}

    def restore(self, state: dict) -> None:
        self.__dict__.update(state)

    def begin_step(self, step: int) -> None:
        self.step = step
        self._step_rollouts, self._step_rows = [], []

    def record(self, outcomes: list[Outcome], pilot: set[int], round_: int) -> None:
        """One generation round of this step; ``pilot``: the prompts asked as screening."""
        kinds = []
        for o in outcomes:
            kind = "pilot" if o.prompt_id in pilot else (
                "commit" if self._last_kind.get(o.prompt_id) == "pilot" else "main")
            self._last_kind[o.prompt_id] = kind
            kinds.append(kind)
        rows = self._add(outcomes, kinds, round_)
        self._open_first = np.concatenate([self._open_first, [o.rollout_ids[0] for o in outcomes]])
        self._open_row = np.concatenate([self._open_row, rows])
        self._step_rollouts += [o.rollout_ids for o in outcomes]
        self._step_rows.append(np.repeat(rows, [o.n for o in outcomes]))

    def trained(self, groups: list[Outcome]) -> None:
        """After this step's update on ``groups``: mark the rows it used, log reused answers
        (a strategy appends them to a group, so they are its last ``reused`` entries)."""
        if not groups:
            return
        used = np.concatenate([g.rollout_ids for g in groups])
        hit = np.isin(self._open_first, used)
        if self._step_rollouts:  # a row of this step counts if any of its rollouts was kept
            ids, rows = np.concatenate(self._step_rollouts), np.concatenate(self._step_rows)
            kept_rows = np.unique(rows[np.isin(ids, used)])
            hit |= np.isin(self._open_row, kept_rows)
        self._trained_step[self._open_row[hit]] = self.step
        self._open_first, self._open_row = self._open_first[~hit], self._open_row[~hit]
        reused = [Outcome(g.prompt_id, g.rewards[g.n - g.reused:], g.tokens[g.n - g.reused:])
                  for g in groups if g.reused]
        if reused:
            rows = self._add(reused, ["reused"] * len(reused), round_=0)
            self._trained_step[rows] = self.step

    def _add(self, outcomes: list[Outcome], kinds: list[str], round_: int) -> np.ndarray:
        ids = np.array([o.prompt_id for o in outcomes], dtype=np.int64)
        chunk = {"step": np.full(len(ids), self.step), "round": np.full(len(ids), round_), "prompt_id": ids,
                 "kind": np.array(kinds, dtype=object), "n": np.array([o.n for o in outcomes]),
                 "correct": np.array([int((o.rewards > 0.5).sum()) for o in outcomes]),
                 "tokens": np.array([int(o.tokens.sum()) for o in outcomes])}
        if self._describe is not None:
            chunk.update({f"prompt_{k}": np.asarray(v) for k, v in self._describe(ids).items()})
        self._chunks.append(chunk)
        rows = np.arange(self._rows, self._rows + len(ids))
        self._rows += len(ids)
        self._trained_step = np.concatenate([self._trained_step, np.full(len(ids), -1)])
        return rows

    def table(self, through_step: int | None = None) -> pd.DataFrame:
        """The rows, with the run's fixed columns (env, scenario, strategy, seed) first; up to
        ``through_step`` when given (a run that stopped mid-step keeps the rows of its table)."""
        if not self._chunks:
            return pd.DataFrame(columns=list(GROUP_COLUMNS))
        columns = {k: np.concatenate([c[k] for c in self._chunks]) for k in self._chunks[0]}
        out = pd.DataFrame({**self.fixed, **columns, "trained": self._trained_step >= 0,
                            "trained_step": self._trained_step})
        described = [c for c in out.columns if c.startswith("prompt_") and c != "prompt_id"]
        if through_step is not None:
            out = out[out["step"] <= through_step].reset_index(drop=True)
        return out[list(GROUP_COLUMNS) + described]
