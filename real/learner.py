"""The GRPO learner: one optimizer step (or ``mini_batches`` of them) on the committed groups.

``update(groups)`` looks every group's rollouts up in the rollout store by id
(``Outcome.rollout_ids``; a group without ids is an error, never matched by reward or length)
and learns on them. It touches neither the generation engine nor the store's retention: the
real environment's learner (``real.env.RealLearner``) puts the engine to sleep before, pushes
the new weights after and ends the store's step.

Objective (DAPO-style GRPO):
- advantages normalised within each group, ``(r - mean) / (std + 1e-6)`` with the population
  std (ddof 0; a one-rollout group gets advantage 0), or ``r - mean`` with
  ``norm_adv_by_std=False`` (``group_advantages``); a group whose rewards are all equal
  contributes no gradient but its tokens still count in the token-mean denominator, as in verl;
- early stopping (a group with importance ``weights``, DUET): the rollouts aborted (weight 0)
  are left out of the batch (no gradient, no tokens in the denominator); the group's mean and
  std are weighted by the importance weights and each kept rollout's advantage is scaled by
  its weight, ``w (r - mean) / (std + 1e-6)``; a group whose rollouts were all aborted
  contributes nothing;
- the clipped importance ratio with clip-higher, ``max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))``.
  The old log-probabilities (``old_logprobs``): ``"recompute"`` (default, as verl) takes every
  row's under the current weights before the update, so the ratio is 1 for all rows at the
  first mini-batch, stale ones included (a pilot drawn steps ago, a cached answer), and clipping
  only bounds the later mini-batches' drift; ``"behaviour"`` keeps that for rollouts generated
  by the current weights but scores older ones against the log-probabilities recorded at
  generation, so stale rows are clipped as off-policy from the first mini-batch;
- ``loss_agg``: token-mean over every response token of the batch (default),
  seq-mean-token-mean or seq-mean-token-sum;
- optional k3 KL penalty to the initial policy (``kl_coef``); gradient clipping; AdamW with an
  optional linear learning-rate warm-up; gradient accumulation over micro-batches of
  ``micro_batch_rows`` rows; gradient checkpointing through the model config.

The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training",
appendix A). Each mini-batch of B rollouts is cut into ``noise_scale_parts`` parts of about
b = B / parts rollouts; the gradient is accumulated part by part, so each part's own gradient
g_p is the difference of the accumulated gradient before and after it, and (B / b_p) g_p is that
part's estimate of the batch gradient G. With the squared norms |G|^2 and the parts' mean
|g_b|^2, unbiased estimates of the true gradient's squared norm and of the per-sample
covariance's trace are |G|^2_est = (B |G|^2 - b |g_b|^2) / (B - b) and
S_est = (|g_b|^2 - |G|^2) / (1/b - 1/B), and B_simple = S_est / |G|^2_est is the batch size (in
rollouts) beyond which a larger batch stops paying. One step's ratio is noisy (its denominator
can even come out negative): the report gives ``noise_grad_sq`` and ``noise_trace`` per step,
averaged over mini-batches, so an analysis can take the ratio of their means over a window as
McCandlish et al. do, plus the step's own ``noise_scale``. A rollout counts as one sample; under
the token-mean loss, samples are weighted by their lengths, which the estimate ignores.
``informative_samples``: the rollouts with non-zero advantage (those that carry gradient).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from allocbench.errors import ConfigError
from allocbench.protocols import Outcome
from real.presets import LearnerConfig
from real.rollouts import Rollout

LOSS_AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
OLD_LOGPROBS = ("recompute", "behaviour")


def group_advantages(rewards: np.ndarray, norm_by_std: bool = True, weights: np.ndarray | None = None) -> np.ndarray:
    """One group's advantages: ``r - mean``, divided by ``std + 1e-6`` (population std) when
    ``norm_by_std``. With importance ``weights`` (early stopping, ``Outcome.weights``) the
    statistics are weighted, mean = sum(w r) / sum(w) and std = sqrt(sum(w (r - mean)^2) / sum(w)),
    and each advantage is scaled by its weight, ``w (r - mean) / (std + 1e-6)``: 0 for a weight
    of 0 (all 0 when every weight is)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if weights is None:
        adv = rewards - rewards.mean()
        if norm_by_std:
            adv = adv / (rewards.std() + 1e-6)
        return adv
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) != len(rewards):
        raise ValueError(f"{len(weights)} weights for {len(rewards)} rewards")
    total = weights.sum()
    if total <= 0:
        return np.zeros_like(rewards)
    centred = rewards - (weights * rewards).sum() / total
    adv = weights * centred
    if norm_by_std:
        adv = adv / (np.sqrt((weights * centred**2).sum() / total) + 1e-6)
    return adv


class GRPOLearner:
    def __init__(self, policy, cfg: LearnerConfig, temperature: float, store, prompt_ids):
        if cfg.loss_agg not in LOSS_AGGS:
            raise ConfigError(f"learner.loss_agg must be one of {', '.join(LOSS_AGGS)}; got {cfg.loss_agg!r}")
        if cfg.old_logprobs not in OLD_LOGPROBS:
            raise ConfigError(f"learner.old_logprobs must be one of {', '.join(OLD_LOGPROBS)}; "
                              f"got {cfg.old_logprobs!r}")
        if cfg.micro_batch_rows <= 0 or cfg.mini_batches <= 0:
            raise ConfigError("learner.micro_batch_rows and learner.mini_batches must be positive")
        self.policy, self.cfg, self.store = policy, cfg, store
        self.prompt_ids = prompt_ids  # prompt id -> prompt token ids
        self.temperature = temperature if temperature > 0 else 1.0
        self.version = 0  # optimizer steps taken; rollouts carry the version they were drawn at
        self.reference = None
        if cfg.kl_coef > 0:
            self.reference = copy.deepcopy(policy.model).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)
        self.rank, self.world = 0, 1
        if cfg.fsdp:  # every rank runs this learner on its share of each batch (docs/scale.md)
            self.rank, self.world = shard_model(policy.model, policy.device)
            if self.reference is not None:
                shard_model(self.reference, policy.device)
        params = [p for p in policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                           weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------ the Learner protocol
    def update(self, groups: list[Outcome]) -> dict:
        """The optimizer step(s) on ``groups``; ``time_store_s`` is the look-up by id."""
        if not groups:
            return {**self._empty(), "time_store_s": 0.0}
        rollouts, advantages = [], []
        store_start = time.perf_counter()
        for g in groups:
            rs = self.store.get(g.rollout_ids)
            rewards = np.array([r.reward for r in rs])
            if any(r.prompt_id != g.prompt_id for r in rs) or not np.array_equal(rewards, g.rewards):
                raise RuntimeError(f"prompt {g.prompt_id}: the group's rollout ids name rollouts of another "
                                   "prompt or with other rewards than the group's")
            # early stopping: aborted rollouts (weight 0) are left out of the batch
            keep = np.flatnonzero(g.importance > 0)
            rollouts += [rs[j] for j in keep]
            advantages.append(group_advantages(rewards, self.cfg.norm_adv_by_std, g.weights)[keep])
        store_s = time.perf_counter() - store_start
        if not rollouts:  # every rollout aborted: nothing to learn
            return {**self._empty(), "time_store_s": store_s}
        stats = self.step(rollouts, np.concatenate(advantages).astype(np.float32))
        return {**stats, "time_store_s": store_s}

    # ------------------------------------------------------------------ the optimisation
    def step(self, rollouts: list[Rollout], advantages: np.ndarray) -> dict:
        """``mini_batches`` optimizer steps on ``rollouts`` with the given advantages."""
        cfg, model = self.cfg, self.policy.model
        prompts = [self.prompt_ids(r.prompt_id) for r in rollouts]
        stale = float(np.mean([r.version < self.version for r in rollouts])) if rollouts else 0.0
        # rows whose old log-probs are the current weights': every row ("recompute"), or only the
        # rollouts the current weights generated ("behaviour"; the others keep theirs)
        if cfg.old_logprobs == "recompute":
            fresh = np.ones(len(rollouts), dtype=bool)
        else:
            fresh = np.array([r.version == self.version for r in rollouts], dtype=bool)
        old = [torch.as_tensor(r.logprobs, dtype=torch.float32) for r in rollouts]
        # one mini-batch: the fresh rows' old log-probs are the step's own forward, detached;
        # several: taken once, before the first optimizer step
        if cfg.mini_batches > 1 and fresh.any():  # the current weights' log-probs, before any step
            with torch.no_grad():
                idx = np.flatnonzero(fresh)
                for chunk in np.array_split(idx, max(1, int(np.ceil(len(idx) / cfg.micro_batch_rows)))):
                    lp, _ = self._logprobs(model, [prompts[i] for i in chunk], [rollouts[i] for i in chunk])
                    for i, row in zip(chunk, lp):
                        old[i] = row.float().cpu()
                fresh[:] = False
        order = np.arange(len(rollouts))
        totals = dict(loss=0.0, pg_loss=0.0, kl=0.0, clip_frac=0.0, ratio_max=0.0, entropy=0.0, grad_norm=0.0,
                      noise_grad_sq=0.0, noise_trace=0.0)
        n_tokens, lr = 0, float("nan")
        for mb in np.array_split(order, cfg.mini_batches):
            if len(mb) == 0:
                continue
            stats = self._optimizer_step(mb, rollouts, prompts, advantages, old, fresh)
            for k in totals:
                totals[k] = max(totals[k], stats[k]) if k == "ratio_max" else totals[k] + stats[k] / cfg.mini_batches
            n_tokens, lr = n_tokens + stats["tokens"], stats["lr"]
        zero = float(np.mean(advantages == 0))
        totals["noise_scale"] = (totals["noise_trace"] / totals["noise_grad_sq"]
                                 if totals["noise_grad_sq"] != 0 else float("nan"))
        return {**totals, "tokens": n_tokens, "rollouts": len(rollouts), "zero_adv_share": zero,
                "informative_samples": int(np.sum(advantages != 0)), "stale_share": stale, "lr": lr}

    def _optimizer_step(self, mb, rollouts, prompts, advantages, old, fresh) -> dict:
        cfg, model = self.cfg, self.policy.model
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        lengths = np.array([len(rollouts[i].ids) for i in mb])
        total_tokens = max(1, int(lengths.sum()))
        n_seq = len(mb)
        sums = dict(loss=0.0, pg_loss=0.0, kl=0.0, clipped=0.0, entropy=0.0)
        ratio_max = 0.0
        noise = NoiseScale(model, len(mb)) if self._measures_noise(len(mb)) else None
        for chunk, weight, part_end in self._chunks(mb):
            logp, entropy = self._logprobs(model, [prompts[i] for i in chunk], [rollouts[i] for i in chunk],
                                           with_entropy=True)
            width = max(len(x) for x in logp)
            device = logp[0].device
            lp = torch.zeros((len(chunk), width), device=device)
            mask = torch.zeros((len(chunk), width), device=device)
            old_lp = torch.zeros((len(chunk), width), device=device)
            for j, (i, row) in enumerate(zip(chunk, logp)):
                lp[j, : len(row)] = row
                mask[j, : len(row)] = 1
                old_lp[j, : len(row)] = row.detach() if fresh[i] else old[i].to(device)
            adv = torch.as_tensor(advantages[chunk], device=device)[:, None]
            ratio = torch.exp((lp - old_lp).clamp(-20, 20))
            clipped_ratio = ratio.clamp(1 - cfg.eps_low, 1 + cfg.eps_high)
            pg = torch.maximum(-adv * ratio, -adv * clipped_ratio)
            per_token = pg
            kl = torch.zeros_like(pg)
            if self.reference is not None:
                with torch.no_grad():
                    ref, _ = self._logprobs(self.reference, [prompts[i] for i in chunk], [rollouts[i] for i in chunk])
                ref_lp = torch.zeros_like(lp)
                for j, row in enumerate(ref):
                    ref_lp[j, : len(row)] = row
                delta = (ref_lp - lp).clamp(-20, 20)
                kl = torch.exp(delta) - delta - 1
                per_token = pg + cfg.kl_coef * kl
            mask = mask * weight  # 0: a stand-in row of a rank with nothing left to do (FSDP)
            loss = self._aggregate(per_token, mask, total_tokens, n_seq)
            # FSDP averages the ranks' gradients; each rank's loss is its share of the batch's
            (loss * self.world).backward()
            with torch.no_grad():
                sums["loss"] += float(loss)
                sums["pg_loss"] += float(self._aggregate(pg, mask, total_tokens, n_seq))
                sums["kl"] += float((kl * mask).sum()) / total_tokens
                sums["clipped"] += float((((ratio - clipped_ratio).abs() > 0).float() * mask).sum()) / total_tokens
                sums["entropy"] += weight * float(sum(e.sum() for e in entropy)) / total_tokens
                ratio_max = max(ratio_max, float((ratio * mask).max()))
            if noise is not None:
                noise.add_rows(len(chunk))
                if part_end:
                    noise.end_part()
        if self.world > 1:  # the batch's statistics: the ranks' shares summed
            sums, ratio_max = _all_reduce_stats(sums, ratio_max, self.policy.device)
        params = [p for p in model.parameters() if p.requires_grad]
        estimate = noise.estimate() if noise is not None else {"noise_grad_sq": float("nan"),
                                                                   "noise_trace": float("nan")}
        if cfg.max_grad_norm > 0 or self.world > 1 or cfg.fsdp:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        else:
            grad_norm = float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
        lr = cfg.lr * min(1.0, (self.version + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if np.isfinite(grad_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        model.eval()
        return dict(loss=sums["loss"], pg_loss=sums["pg_loss"], kl=sums["kl"], clip_frac=sums["clipped"],
                    entropy=sums["entropy"], ratio_max=ratio_max, grad_norm=grad_norm, tokens=total_tokens, lr=lr,
                    **estimate)

    def _measures_noise(self, rows: int) -> bool:
        return self.cfg.noise_scale_parts >= 2 and self.world == 1 and rows >= 2

    def _chunks(self, mb: np.ndarray) -> list[tuple[np.ndarray, float, bool]]:
        """This rank's micro-batches of the mini-batch ``mb`` as (rows, weight, whether a noise-
        scale part ends with it). One process: ``mb`` cut into the noise-scale parts (or kept
        whole), each in chunks of ``micro_batch_rows``. Under FSDP every rank takes every
        ``world``-th row and all ranks run the same number of micro-batches (each forward is a
        collective); a rank left without rows runs one row with weight 0."""
        rows = self.cfg.micro_batch_rows
        if self.world == 1:
            parts = min(self.cfg.noise_scale_parts, len(mb)) if self._measures_noise(len(mb)) else 1
            out = []
            for part in np.array_split(mb, parts):
                pieces = np.array_split(part, max(1, int(np.ceil(len(part) / rows))))
                out += [(c, 1.0, j == len(pieces) - 1) for j, c in enumerate(pieces)]
            return out
        mine = mb[self.rank::self.world]
        n = max(1, int(np.ceil(int(np.ceil(len(mb) / self.world)) / rows)))
        return [(c, 1.0, False) if len(c) else (mb[:1], 0.0, False) for c in np.array_split(mine, n)]

    @torch.no_grad()
    def objective(self, rollouts: list[Rollout], advantages: np.ndarray) -> float:
        """The clipped surrogate loss (without KL) of ``rollouts`` under the current weights, with
        their behaviour log-probabilities as the old policy: what a step on them lowers."""
        prompts = [self.prompt_ids(r.prompt_id) for r in rollouts]
        logp, _ = self._logprobs(self.policy.model, prompts, rollouts)
        total = sum(len(r.ids) for r in rollouts)
        loss = 0.0
        for lp, r, a in zip(logp, rollouts, advantages):
            ratio = torch.exp(lp.float().cpu() - torch.as_tensor(r.logprobs))
            clipped = ratio.clamp(1 - self.cfg.eps_low, 1 + self.cfg.eps_high)
            loss += float(torch.maximum(-a * ratio, -a * clipped).sum()) / total
        return loss

    def _aggregate(self, per_token: torch.Tensor, mask: torch.Tensor, total_tokens: int, n_seq: int) -> torch.Tensor:
        """This micro-batch's share of the mini-batch loss, so summed over micro-batches it is
        the mini-batch's loss under ``loss_agg``."""
        if self.cfg.loss_agg == "token-mean":
            return (per_token * mask).sum() / total_tokens
        per_seq = (per_token * mask).sum(-1)
        if self.cfg.loss_agg == "seq-mean-token-mean":
            per_seq = per_seq / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / n_seq

    def _logprobs(self, model, prompts: list[list[int]], rollouts: list[Rollout], with_entropy: bool = False):
        """Per rollout: log-probabilities of its completion tokens under ``model`` at the
        sampling temperature (and the entropy per position when asked, without gradient)."""
        device = self.policy.device
        seqs = [p + r.ids.tolist() for p, r in zip(prompts, rollouts)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.policy.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.as_tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        logprobs = (logits[:, :-1].float() / self.temperature).log_softmax(-1)
        out, entropies = [], []
        for i, (p, r) in enumerate(zip(prompts, rollouts)):
            lo, hi = len(p) - 1, len(p) - 1 + len(r.ids)
            target = ids[i, lo + 1: hi + 1]
            out.append(logprobs[i, lo:hi].gather(-1, target[:, None])[:, 0])
            if with_entropy:
                with torch.no_grad():
                    rows = logprobs[i, lo:hi]
                    entropies.append(-(rows.exp() * rows).sum(-1))
        return out, entropies

    def _empty(self) -> dict:
        return dict(loss=0.0, pg_loss=0.0, kl=0.0, clip_frac=0.0, ratio_max=0.0, entropy=0.0, grad_norm=0.0,
                    noise_grad_sq=float("nan"), noise_trace=float("nan"), noise_scale=float("nan"),
                    tokens=0, rollouts=0, zero_adv_share=float("nan"), informative_samples=0,
                    stale_share=float("nan"), lr=float("nan"))

    def state_dict(self) -> dict:
        return {"version": self.version, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.version = state["version"]
        self.optimizer.load_state_dict(state["optimizer"])


class NoiseScale:
    """The two squared norms B_simple is estimated from (module docstring): each part's own
    gradient, read off the accumulated gradient as parts end, and the whole mini-batch's."""

    def __init__(self, model: torch.nn.Module, batch_rows: int):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.batch_rows = batch_rows
        self.before = None  # the accumulated gradient when the current part began
        self.rows = 0  # rows of the current part
        self.part_sq: list[float] = []  # per part: |(B / b_p) g_p|^2
        self.part_rows: list[int] = []

    def add_rows(self, rows: int) -> None:
        self.rows += rows

    def end_part(self) -> None:
        now = [p.grad.detach().float() if p.grad is not None else torch.zeros_like(p, dtype=torch.float32)
               for p in self.params]
        diff = now if self.before is None else [a - b for a, b in zip(now, self.before)]
        scale = self.batch_rows / self.rows
        self.part_sq.append(float(sum((d * scale).pow(2).sum() for d in diff)))
        self.part_rows.append(self.rows)
        self.before = [t.clone() for t in now]
        self.rows = 0

    def estimate(self) -> dict:
        B = self.batch_rows
        if len(self.part_sq) < 2 or self.before is None:
            return {"noise_grad_sq": float("nan"), "noise_trace": float("nan")}
        big = float(sum(t.pow(2).sum() for t in self.before))  # |G_B|^2: the whole accumulated gradient
        b = B / len(self.part_sq)
        small = float(np.mean(self.part_sq))
        grad_sq = (B * big - b * small) / (B - b)
        trace = (small - big) / (1 / b - 1 / B)
        return {"noise_grad_sq": grad_sq, "noise_trace": trace}


# ---------------------------------------------------------------- FSDP (learner.fsdp)

def init_distributed(device_type: str) -> tuple[int, int]:
    """Join the torchrun job this process was started in (RANK / WORLD_SIZE / MASTER_ADDR from
    torchrun), NCCL on GPU and gloo on CPU; a lone process makes a world of one. Returns
    (rank, world size). On GPU, each rank takes the GPU LOCAL_RANK."""
    import os

    import torch.distributed as dist

    if device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend)
        else:  # a world of one (no torchrun)
            import tempfile

            store = dist.FileStore(tempfile.mktemp(prefix="allocbench-dist-"), 1)
            dist.init_process_group(backend, store=store, rank=0, world_size=1)
    return dist.get_rank(), dist.get_world_size()


def shard_model(model: torch.nn.Module, device: torch.device) -> tuple[int, int]:
    """FSDP2 (``fully_shard``) over all ranks: each decoder layer (the model's
    ``_no_split_modules`` classes) is one unit, the rest (embeddings, head, final norm) the
    root's. Parameter names do not change, so the state dict keeps checkpoint names."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():
        init_distributed(device.type)
    world = dist.get_world_size()
    mesh = init_device_mesh(device.type, (world,))
    units = set(getattr(model, "_no_split_modules", None) or ())
    for module in list(model.modules())[1:]:
        if type(module).__name__ in units:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return dist.get_rank(), world


def _all_reduce_stats(sums: dict, ratio_max: float, device) -> tuple[dict, float]:
    import torch.distributed as dist

    keys = list(sums)
    values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    top = torch.tensor([ratio_max], dtype=torch.float64, device=device)
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    return dict(zip(keys, values.tolist())), float(top.item())
