"""The rollout store: the generated text behind every ``Outcome``.

Strategies see only rewards and token counts (``Outcome``); they merge outcomes (pilot +
commit), keep subsets (down-sampling) and add cached answers (``reused``). The learner needs the
token ids behind each entry. The sampler stores every rollout it generates here, per prompt;
``resolve(group)`` finds, for each (reward, token count) entry of a group, a distinct stored
rollout of that prompt with the same pair: rollouts not yet trained on first (newest first),
then ones already trained on (a reused cached answer). Two rollouts of one prompt with the same
reward and the same length are interchangeable here; which one a strategy meant cannot be told
from an ``Outcome``, so the newest is taken (an ``Outcome.rollout_ids`` field, kept through
``merge`` and subsetting, would make this exact).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from allocbench.protocols import Outcome


@dataclass
class Rollout:
    prompt_id: int
    ids: np.ndarray  # completion token ids
    logprobs: np.ndarray  # behaviour log-probabilities at generation time
    reward: float
    version: int  # learner steps taken when it was generated
    finished: bool
    trained: bool = False

    @property
    def key(self) -> tuple[float, int]:
        return (float(self.reward), len(self.ids))


class RolloutStore:
    def __init__(self, retain_steps: int = 16):
        self.retain_steps = retain_steps
        self._by_prompt: dict[int, list[Rollout]] = defaultdict(list)
        self._touched: dict[int, set[int]] = defaultdict(set)  # version -> prompts added at it

    def add(self, rollouts: list[Rollout]) -> None:
        for r in rollouts:
            self._by_prompt[r.prompt_id].append(r)
            self._touched[r.version].add(r.prompt_id)

    def resolve(self, group: Outcome) -> list[Rollout]:
        stored = self._by_prompt.get(group.prompt_id, [])
        # candidates: untrained newest first, then trained newest first
        free: dict[tuple[float, int], list[int]] = defaultdict(list)
        for trained in (False, True):
            for j in range(len(stored) - 1, -1, -1):
                if stored[j].trained == trained:
                    free[stored[j].key].append(j)
        picked: list[Rollout] = []
        used: dict[tuple[float, int], list[int]] = defaultdict(list)
        for reward, tokens in zip(group.rewards.tolist(), group.tokens.tolist()):
            key = (float(reward), int(tokens))
            if free[key]:
                j = free[key].pop(0)
                used[key].append(j)
                picked.append(stored[j])
            elif group.reused and used[key]:  # a cached answer already in this group, reused
                picked.append(stored[used[key][-1]])
            else:
                raise RuntimeError(
                    f"prompt {group.prompt_id}: the group holds a rollout (reward {reward}, {tokens} tokens) "
                    "that the sampler never generated (or that was dropped from the store)")
        return picked

    def mark_trained(self, rollouts: list[Rollout]) -> None:
        for r in rollouts:
            r.trained = True

    def evict(self, version: int) -> None:
        """Drop rollouts older than ``retain_steps`` versions, keeping each prompt's newest
        correct one (strategies that reuse cached answers point at it). Only prompts that got
        rollouts at a version now expired are looked at."""
        expired = [v for v in self._touched if version - v > self.retain_steps]
        prompts = set().union(*(self._touched.pop(v) for v in expired)) if expired else set()
        for pid in prompts:
            rows = self._by_prompt.get(pid)
            if rows is None:
                continue
            correct = [r for r in rows if r.reward > 0.5]
            keep = [r for r in rows if version - r.version <= self.retain_steps]
            if correct and not any(r is correct[-1] for r in keep):
                keep.insert(0, correct[-1])
            if keep:
                self._by_prompt[pid] = keep
            else:
                del self._by_prompt[pid]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_prompt.values())

    def state_dict(self) -> dict:
        return {"retain_steps": self.retain_steps, "rollouts": dict(self._by_prompt),
                "touched": dict(self._touched)}

    def load_state_dict(self, state: dict) -> None:
        self.retain_steps = state["retain_steps"]
        self._by_prompt = defaultdict(list, state["rollouts"])
        self._touched = defaultdict(set, state["touched"])
