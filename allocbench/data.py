"""The candidate stream: the data loader a strategy draws fresh prompts from."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from allocbench.errors import AllocbenchError


class CandidateStream:
    """Prompts in epoch order, as a drop-last data loader serves them.

    ``take(k)`` returns the next ``k`` prompts of the current epoch; when fewer than ``k``
    remain, they are dropped and a new epoch starts (verl's loader drops the last partial
    batch). Prompts passed to ``exclude`` leave the pool from the next epoch on.
    """

    def __init__(
        self,
        prompt_ids: np.ndarray,
        epoch_order: Callable[[np.random.Generator], np.ndarray],
        rng: np.random.Generator,
    ):
        self._pool = np.asarray(prompt_ids)
        self._epoch_order = epoch_order
        self._rng = rng
        self._excluded: set[int] = set()
        self.epoch = 0
        self._order = np.empty(0, dtype=self._pool.dtype)
        self._pos = 0

    @property
    def excluded(self) -> frozenset[int]:
        return frozenset(self._excluded)

    def exclude(self, prompt_ids: Iterable[int]) -> None:
        self._excluded.update(int(i) for i in prompt_ids)

    def _new_epoch(self, k: int) -> None:
        order = self._epoch_order(self._rng)
        if self._excluded:
            order = order[~np.isin(order, np.fromiter(self._excluded, dtype=order.dtype))]
        if len(order) < k:
            raise AllocbenchError(
                f"the training pool has {len(order)} prompts left after exclusions, "
                f"fewer than the {k} one draw needs"
            )
        self._order, self._pos = order, 0
        self.epoch += 1

    def state(self) -> dict:
        """Everything needed to continue the stream exactly where it is (for checkpoints)."""
        return dict(epoch=self.epoch, order=self._order, pos=self._pos,
                    excluded=set(self._excluded), rng=self._rng.bit_generator.state)

    def restore(self, state: dict) -> None:
        self.epoch, self._order, self._pos = state["epoch"], state["order"], state["pos"]
        self._excluded = set(state["excluded"])
        self._rng.bit_generator.state = state["rng"]

    def take(self, k: int) -> np.ndarray:
        if self._pos + k > len(self._order):
            self._new_epoch(k)
        ids = self._order[self._pos : self._pos + k]
        self._pos += k
        return ids
