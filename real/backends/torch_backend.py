"""Batched sampling with a KV cache in plain torch: runs on CPU and GPU, any transformers
causal LM.

One round: each prompt is repeated ``count`` times, left-padded into one batch (cut into chunks
of ``max_batch_rows`` rows for a large round), prefilled in one forward pass, then decoded one
token per step for all rows at once with the model's KV cache, until every row has produced EOS
(or another of the policy's stop tokens) or ``max_new_tokens``. Temperature and top-p (nucleus)
sampling; the log-probability of each sampled token under ``log_softmax(logits / temperature)``
is kept for the learner's importance ratio.

Early stopping (``stop``, an ``allocbench.protocols.EarlyStop``): each alive row's text is
followed token by token (each new token decoded alone and appended, ``real.verifier.AnswerScan``).
A row whose boxed answer has closed stops ``answer_tail`` tokens later (finished). A row alive
at its ``abort_after``-th token without an answer marker draws a uniform from the round's
generator (only such rows draw, after that step's token) and is aborted there unless it falls
below ``keep_prob``: an aborted row's completion is what it generated so far (weight 0, not
finished); a kept one runs on with weight 1 / keep_prob. Without ``stop`` nothing of this runs
(no extra work, no extra random draws).
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import torch

from allocbench.protocols import EarlyStop
from real.backends.base import Completion, SamplingParams
from real.verifier import AnswerScan


class TorchBackend:
    def __init__(self, policy, seed: int = 0, max_batch_rows: int = 512):
        self.policy = policy
        self.max_batch_rows = max_batch_rows
        self.generator = torch.Generator(device=policy.device)
        self.generator.manual_seed(int(seed))
        # transformers >= 5.x names the KV cache ``cache``; earlier versions ``past_key_values``
        params = inspect.signature(policy.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._pieces: dict[int, str] = {}  # token id -> its text alone (early stopping's scans)

    def update_weights(self) -> None:  # generation uses the learner's model itself
        pass

    def sleep(self) -> None:  # nothing of its own to release
        pass

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    @torch.no_grad()  # not inference_mode: an FSDP model's gathered weights must stay usable for training
    def generate(self, prompts: Sequence[Sequence[int]], counts: Sequence[int], params: SamplingParams,
                 generator: torch.Generator | None = None, stop: EarlyStop | None = None) -> list[list[Completion]]:
        generator = generator or self.generator
        rows = [p for p, c in zip(prompts, counts) for _ in range(c)]
        flat: list[Completion] = []
        for start in range(0, len(rows), self.max_batch_rows):
            flat += self._chunk(rows[start: start + self.max_batch_rows], params, generator, stop)
        out, i = [], 0
        for c in counts:
            out.append(flat[i: i + c])
            i += c
        return out

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.policy.decode([token])
        return piece

    def _chunk(self, rows: list[Sequence[int]], params: SamplingParams, generator,
               stop: EarlyStop | None = None) -> list[Completion]:
        policy, model = self.policy, self.policy.model
        device, pad = policy.device, policy.pad_id
        stops = torch.as_tensor(policy.stop_ids, device=device)
        was_training = model.training
        model.eval()
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.as_tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache, logits = getattr(out, self._cache_kw), out.logits[:, -1, :]
        next_pos = positions[:, -1:] + 1
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        tokens, logps, alive = [], [], []
        early = _EarlyStopper(stop, len(rows), self._piece) if stop is not None else None
        for step in range(params.max_new_tokens):
            token, logp = _sample(logits.float(), params, generator)
            token = torch.where(done, torch.full_like(token, pad), token)
            tokens.append(token)
            logps.append(logp)
            alive.append(~done)
            was_done = done
            done = done | torch.isin(token, stops)
            if early is not None:
                done = early.step(step, token, was_done, done, generator)
            if bool(done.all()) or step == params.max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                        use_cache=True, **{self._cache_kw: cache})
            cache, logits = getattr(out, self._cache_kw), out.logits[:, -1, :]
            next_pos = next_pos + 1
        if was_training:
            model.train()
        tokens_t = torch.stack(tokens, 1).cpu().numpy()
        logps_t = torch.stack(logps, 1).float().cpu().numpy()
        lengths = torch.stack(alive, 1).sum(1).cpu().numpy()
        finished = done.cpu().numpy()
        aborted = early.aborted if early is not None else [False] * len(rows)
        weights = early.weights if early is not None else [1.0] * len(rows)
        return [Completion(tokens_t[i, :n].astype(np.int32), logps_t[i, :n].astype(np.float32),
                           bool(finished[i]) and not aborted[i], weights[i])
                for i, n in enumerate(lengths)]


class _EarlyStopper:
    """One chunk's early stopping (module docstring): the rows' answer scans, where rows with a
    closed answer end, and the abort check with its weights."""

    def __init__(self, stop: EarlyStop, n_rows: int, piece):
        self.stop, self.piece = stop, piece
        self.scans = [AnswerScan() for _ in range(n_rows)]
        self.end_at: list[int | None] = [None] * n_rows  # the step a row with a closed answer ends at
        self.weights = [1.0] * n_rows
        self.aborted = [False] * n_rows

    def step(self, step: int, token: torch.Tensor, was_done: torch.Tensor, done: torch.Tensor,
             generator) -> torch.Tensor:
        """After the token of ``step`` (0-based) was drawn: ``done`` with the rows that stop here."""
        stop = self.stop
        tokens, before, now = token.tolist(), was_done.tolist(), done.tolist()
        ends: list[int] = []
        for i, t in enumerate(tokens):
            if before[i]:
                continue
            scan = self.scans[i]
            scan.feed(self.piece(t))
            if scan.closed_at is not None and self.end_at[i] is None:
                self.end_at[i] = step + stop.answer_tail
            if not now[i] and self.end_at[i] is not None and step >= self.end_at[i]:
                ends.append(i)
        if step + 1 == stop.abort_after:  # every alive row has generated abort_after tokens
            ending = set(ends)
            check = [i for i in range(len(tokens))
                     if not before[i] and not now[i] and i not in ending and not self.scans[i].marker]
            if check:
                draws = torch.rand(len(check), generator=generator, device=generator.device).tolist()
                for i, u in zip(check, draws):
                    if u < stop.keep_prob:
                        self.weights[i] = 1.0 / stop.keep_prob
                    else:
                        self.weights[i], self.aborted[i] = 0.0, True
                        ends.append(i)
        if not ends:
            return done
        done = done.clone()
        done[torch.as_tensor(ends, device=done.device)] = True
        return done


def _sample(logits: torch.Tensor, params: SamplingParams, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(token, its log-probability) per row."""
    if params.temperature == 0:
        logprobs = logits.log_softmax(-1)
        token = logits.argmax(-1)
        return token, logprobs.gather(-1, token[:, None])[:, 0]
    logprobs = (logits / params.temperature).log_softmax(-1)
    probs = logprobs.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # the smallest set reaching top_p
        sorted_p = sorted_p * keep
        pick = torch.multinomial(sorted_p, 1, generator=generator)
        token = order.gather(-1, pick)[:, 0]
    else:
        token = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return token, logprobs.gather(-1, token[:, None])[:, 0]
