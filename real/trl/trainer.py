"""``AllocGRPOTrainer``: TRL's ``GRPOTrainer`` with an allocbench strategy choosing, each training
step, which prompts get rollouts and how many.

    trainer = AllocGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=...,
                               strategy="pilot_commit", strategy_params={"pilot_fraction": 0.25})

How a step runs. TRL calls ``_generate_and_score_completions`` once per generation batch; here
that is one allocbench step (one optimizer step at TRL's defaults; more with
``steps_per_generation`` above ``gradient_accumulation_steps`` or ``num_iterations`` > 1, which
work as in TRL). ``real.trl`` never touches TRL's optimisation:

1. the strategy's ``collect`` runs against ``TRLSampler``, through allocbench's ledger. Each
   sampler call is one generation round: the requested prompts' dataset rows, each repeated as
   many times as it asked for rollouts, go through the trainer's own generation path
   (``GRPOTrainer._generate``: transformers, or TRL's vLLM when configured) and its reward
   functions (``_calculate_rewards``); the rollouts are kept in a ``real.rollouts.RolloutStore``
   under the ids their ``Outcome`` carries, so a strategy may train on them steps later (a
   Pilot-Commit pilot) within ``retain_steps``;
2. the groups it returns are *replayed* through TRL's own ``_generate_and_score_completions``:
   its generation and reward calls answer with the stored rollouts, so TRL builds the loss
   batch exactly as for its own generations (padding, masks, old and reference log-probs,
   vLLM importance weights, logging), and the advantages are then TRL's formula over each
   group, whatever its size (``group_advantages``).

B and n are TRL's: B = ``generation_batch_size / num_generations`` prompts, n =
``num_generations`` rollouts each, so ``strategy="grpo"`` allocates as plain ``GRPOTrainer``
does. The strategy draws prompts from ``train_dataset`` in its own shuffled epochs (seeded by
``args.seed``, as ``allocbench.run`` draws them); TRL's data loader only paces the steps.

What is logged: TRL's logs (tensorboard, wandb, trackio, whatever ``report_to`` names) get the
ledger's counts under ``allocbench/``: ``cum_rollouts``, ``cum_pilot_rollouts``, ``cum_tokens``,
``cum_rounds`` (since the start) and ``step_rollouts``, ``step_pilot_rollouts``, ``rounds``,
``trained_rollouts``, ``zero_var_groups`` (per step, averaged over the logging window as TRL
averages its own metrics). At the end of ``train`` (also when it fails) the run's allocbench
tables go to ``results_dir`` (default: ``args.output_dir``): ``runs.parquet``, one row per step
in allocbench's schema (``env`` "trl"), which ``allocbench figures`` reads unchanged, and
``groups.parquet``, one row per (step, round, prompt). Its ``learn_*`` columns: the loss batch's
``rollouts`` and ``tokens``, ``zero_adv_share`` and ``informative_samples`` (what a strategy's
``last_update`` sees next step; TRL's step gives no gradient-noise estimate, so no ``noise_*``),
and seconds: ``time_gen_s`` (generation), ``time_score_s`` (reward functions), ``time_replay_s``
(TRL's batch builder on the groups) and ``time_alloc_s`` (the plug-in's own bookkeeping:
strategy, ledger, rollout store, advantages, logging).

Held-out accuracy (``eval_acc``): ``evaluator``, a callable returning allocbench evaluator
scores (``{"eval_acc": ..., ...}``, e.g. ``env.evaluator.evaluate`` of a real environment whose
model is the one this trainer trains), runs before the first step, every ``eval_every`` steps
and after the last. Without one, TRL's own evaluations (``eval_dataset`` with an
``eval_strategy``) fill ``eval_acc`` with their mean reward (``eval_reward``: accuracy for a 0/1
reward), in the row of the step they followed.

Not supported (each refused with a one-line error before training): several processes,
tools / ``environment_factory`` / ``rollout_func``, image datasets, iterable datasets,
``multi_objective_aggregation="normalize_then_sum"`` and resuming from a checkpoint (the
strategy's buffer and the ledger are not in TRL's checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from trl import GRPOTrainer

from allocbench.errors import ConfigError
from allocbench.groups import GroupLog
from allocbench.protocols import Outcome
from allocbench.runner import Allocation, results_table
from allocbench.schema import writable, write_groups, write_table
from allocbench.strategy import Strategy, make_strategy
from real.env import Timer
from real.rollouts import Rollout, RolloutStore

RESULTS = ["runs.parquet", "groups.parquet"]
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class TRLRollout(Rollout):
    """A stored rollout with what TRL's loss batch is built from besides its token ids."""

    prompt_ids: list | None = None  # the prompt as TRL tokenized it
    completion: Any = None  # decoded text (or an assistant message, for chat prompts)
    func_rewards: np.ndarray | None = None  # one reward per reward function (NaN: not applicable)


class TRLSampler:
    """allocbench's ``Sampler`` over a ``GRPOTrainer``: one generation round per call, through
    the trainer's generation path and reward functions; every rollout goes to ``store``."""

    def __init__(self, trainer: AllocGRPOTrainer, store: RolloutStore, timer: Timer):
        self.trainer, self.store, self.timer = trainer, store, timer
        self._rows: dict[int, dict] = {}  # dataset rows by prompt id (the dataset does not change)

    def row(self, i: int) -> dict:
        row = self._rows.get(i)
        if row is None:
            row = self._rows[i] = dict(self.trainer.train_dataset[i])
        return row

    def sample(self, requests: Mapping[int, int]) -> list[Outcome]:
        t = self.trainer
        ids = [int(i) for i in requests]
        counts = [int(requests[i]) for i in requests]
        size = len(t.train_dataset)
        for i in ids:
            if not 0 <= i < size:
                raise ValueError(f"request for prompt {i} outside the training dataset of {size}")
        inputs = [self.row(i) for i, c in zip(ids, counts) for _ in range(c)]
        prompts = [x["prompt"] for x in inputs]
        start = time.perf_counter()
        prompt_ids, completion_ids, _, completions, logprobs, _, _, _ = t._generate(prompts)
        mid = time.perf_counter()
        func_rewards = t._calculate_rewards(inputs, prompts, completions, completion_ids).cpu()
        self.timer.add("time_gen_s", mid - start)
        self.timer.add("time_score_s", time.perf_counter() - mid)
        unscorable = torch.isnan(func_rewards).all(dim=1)
        if unscorable.any():
            k = int(unscorable.nonzero()[0, 0])
            raise ValueError(f"every reward function returned None for a completion of prompt {inputs[k]['prompt']!r}; "
                             "the allocbench plug-in needs a reward for every rollout (strategies screen on them)")
        rewards = (func_rewards * t.reward_weights.cpu()[None]).nansum(dim=1).double().numpy()
        version = t.state.global_step
        stops = set(t.eos_token_ids)
        outcomes, k = [], 0
        for i, c in zip(ids, counts):
            rows = range(k, k + c)
            k += c
            stored = [TRLRollout(i, np.asarray(completion_ids[j]), None if logprobs is None else logprobs[j],
                                 float(rewards[j]), version, bool(completion_ids[j]) and completion_ids[j][-1] in stops,
                                 prompt_ids=prompt_ids[j], completion=completions[j],
                                 func_rewards=func_rewards[j].numpy()) for j in rows]
            tokens = np.array([len(completion_ids[j]) for j in rows], dtype=np.int64)
            self.timer.add("gen_tokens", float(tokens.sum()))
            outcomes.append(Outcome(i, rewards[k - c: k].copy(), tokens, 0, self.store.add(stored)))
        return outcomes


def group_advantages(groups: list[Outcome], scale_rewards: str) -> tuple[np.ndarray, np.ndarray]:
    """TRL's advantages (``multi_objective_aggregation="sum_then_normalize"``) over each group,
    whatever its size: ``r - group mean``, divided by ``std + 1e-4`` where ``std`` is the group's
    (``scale_rewards="group"``) or the whole batch's (``"batch"``) sample standard deviation
    (ddof 1, as TRL's ``nanstd``; a one-rollout group's is 0), or not divided (``"none"``).
    Returns the advantages and, per rollout, whether that std is zero (TRL's
    ``frac_reward_zero_std``: the group's std, the batch's under ``"batch"``)."""
    sizes = np.array([g.n for g in groups])
    rewards = np.concatenate([g.rewards for g in groups])
    starts = np.cumsum(sizes) - sizes
    deviation = rewards - np.repeat(np.add.reduceat(rewards, starts) / sizes, sizes)
    squares = np.add.reduceat(deviation**2, starts)
    group_std = np.sqrt(np.divide(squares, sizes - 1, out=np.zeros(len(sizes)), where=sizes > 1))
    if scale_rewards == "batch":
        std = np.full(len(rewards), rewards.std(ddof=1) if len(rewards) > 1 else 0.0)
    else:
        std = np.repeat(group_std, sizes)
    advantages = deviation if scale_rewards == "none" else deviation / (std + 1e-4)
    return advantages, np.isclose(std, 0.0)


class AllocGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rollouts are allocated by the allocbench strategy ``strategy`` (a
    registered name with ``strategy_params``, or a ``Strategy``); see the module docstring.

    ``evaluator`` / ``eval_every``: held-out scores for ``runs.parquet``; ``results_dir``: where
    ``runs.parquet`` and ``groups.parquet`` go (default ``args.output_dir``; existing ones are
    replaced only with ``overwrite_results``); ``scenario``: the tables' scenario column (default:
    the model's name); ``retain_steps``: training steps a rollout stays usable after it was drawn
    (at least the strategy's staleness; ``real.rollouts``). Every other argument is
    ``GRPOTrainer``'s."""

    def __init__(self, *args, strategy: str | Strategy = "grpo", strategy_params: Mapping[str, Any] | None = None,
                 evaluator: Callable[[], Mapping[str, Any]] | None = None, eval_every: int = 10,
                 results_dir: str | Path | None = None, overwrite_results: bool = False,
                 scenario: str | None = None, retain_steps: int = 16, **kwargs):
        # everything that needs no model is checked before TRL loads one
        if isinstance(strategy, Strategy):
            if strategy_params:
                raise ConfigError("strategy_params is for a strategy given by name; set the fields of a Strategy object")
        else:
            strategy = make_strategy(strategy, **dict(strategy_params or {}))
        for name in ("tools", "environment_factory", "rollout_func"):
            if kwargs.get(name) is not None:
                raise ConfigError(f"AllocGRPOTrainer does not support {name}: its rollouts are single-turn "
                                  "completions the strategy allocates")
        if not isinstance(eval_every, int) or isinstance(eval_every, bool) or eval_every <= 0:
            raise ConfigError(f"eval_every must be a positive integer, got {eval_every!r}")
        # GRPOTrainer(model, reward_funcs, args, train_dataset, ...), by position or by name
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        dataset = kwargs.get("train_dataset", args[3] if len(args) > 3 else None)
        if dataset is None or not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ConfigError("AllocGRPOTrainer needs a map-style train_dataset (a datasets.Dataset, not an "
                              "IterableDataset): a strategy draws prompts from it by index")
        if {"image", "images"} & set(getattr(dataset, "column_names", None) or []):
            raise ConfigError("AllocGRPOTrainer does not support image datasets")
        if config is not None:
            if config.multi_objective_aggregation != "sum_then_normalize":
                raise ConfigError("AllocGRPOTrainer supports multi_objective_aggregation='sum_then_normalize' only "
                                  f"(a strategy screens on one reward per rollout); got "
                                  f"{config.multi_objective_aggregation!r}")
            if config.scale_rewards not in SCALE_REWARDS:
                raise ConfigError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}; "
                                  f"got {config.scale_rewards!r}")
            # a setting this B and n cannot run fails before the model loads
            strategy.bind(config.generation_batch_size // config.num_generations, config.num_generations)
        super().__init__(*args, **kwargs)
        a = self.args
        if self.accelerator.num_processes > 1:
            raise ConfigError(f"AllocGRPOTrainer runs on one process; this run has {self.accelerator.num_processes}")
        self.results_dir = Path(results_dir if results_dir is not None else a.output_dir)
        self._results = writable(self.results_dir, RESULTS, overwrite_results,
                                 hint="pass overwrite_results=True or choose another results_dir")
        self.store = RolloutStore(retain_steps)
        self.timer = Timer()
        self.groups_log = GroupLog()
        pool = np.arange(len(self.train_dataset))
        name = scenario or Path(str(getattr(self.model.config, "_name_or_path", "") or "model")).name
        self.sampler = TRLSampler(self, self.store, self.timer)
        self.allocation = Allocation(  # B and n from TRL's config
            self.sampler, pool, lambda rng: rng.permutation(pool), strategy,
            a.generation_batch_size // self.num_generations, self.num_generations, a.seed, env="trl",
            scenario=name, groups=self.groups_log)
        self.evaluator, self.eval_every = evaluator, eval_every
        self.rows: list[dict] = []  # the results table's rows, one per finished step
        self._pending: tuple[int, list[Outcome], dict] | None = None  # the step whose update is under way
        self._trl_scores: dict = {}  # TRL's last evaluation, for the next row when there is no evaluator
        self._replay: tuple | None = None  # the stored rollouts TRL's generation and rewards answer with
        self._replay_rewards: torch.Tensor | None = None
        self._start: float | None = None

    # ------------------------------------------------------------------ TRL's hooks
    def train(self, *args, **kwargs):
        resume = kwargs.get("resume_from_checkpoint", args[0] if args else None)
        if resume:
            raise ConfigError("AllocGRPOTrainer cannot resume from a checkpoint: the strategy's buffer and the "
                              "ledger are not in TRL's checkpoints; start the run afresh")
        if self._start is not None:
            raise ConfigError("an AllocGRPOTrainer trains once; make a new one for another run")
        self._start = time.perf_counter()
        finished = False
        try:
            output = super().train(*args, **kwargs)
            finished = True
            return output
        finally:  # a failed run keeps its finished steps' rows, unevaluated
            if finished or self.rows:
                self._end_step(final=True, evaluate=finished)
            self._write_results()

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if f"{prefix}_reward" in metrics:
            self._trl_scores = {"eval_acc": metrics[f"{prefix}_reward"]}
        return metrics

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:  # evaluation stays TRL's own: uniform, off the ledger
            return super()._generate_and_score_completions(inputs)
        self._end_step(final=False)
        step = self.rows[-1]["step"] + 1
        start = time.perf_counter()
        with self._rows_as_rollouts():
            groups = self.allocation.collect(step, self._last_report())
            replay_start = time.perf_counter()
            output, advantages = self._loss_batch(groups)
            replay_s = time.perf_counter() - replay_start
        self.groups_log.trained(groups)
        self.store.end_step()  # the stored rollouts age one step (real.rollouts' retention)
        self._log_counts(groups)
        timing = self.timer.take()
        # the plug-in's own seconds: the step's so far less generation, rewards and TRL's batch builder
        alloc_s = time.perf_counter() - start - replay_s - timing["time_gen_s"] - timing["time_score_s"]
        self._pending = (step, groups, {
            "rollouts": len(advantages), "tokens": int(output["completion_mask"].sum()),
            "zero_adv_share": float(np.mean(advantages == 0)), "informative_samples": int(np.sum(advantages != 0)),
            **timing, "time_replay_s": replay_s, "time_alloc_s": alloc_s})
        return output

    def _generate(self, prompts):
        if self._replay is not None:
            return self._replay
        return super()._generate(prompts)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self._replay is not None:
            return self._replay_rewards
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    # ------------------------------------------------------------------ the plug-in
    @contextmanager
    def _rows_as_rollouts(self):
        """Within a step TRL reads ``num_generations`` twice: its vLLM server call asks every
        ``num_generations``-th row's prompt for that many samples, and its advantages are
        normalised over blocks of that many rows. The plug-in's rows are single rollouts of
        groups of any size, so both must see blocks of one: every row is its own request, and
        TRL's block advantages come out 0, to be replaced by the groups' own."""
        n = self.num_generations
        self.num_generations = 1
        try:
            yield
        finally:
            self.num_generations = n

    def _loss_batch(self, groups: list[Outcome]) -> tuple[dict, np.ndarray]:
        """TRL's loss batch of ``groups``: its own batch builder, answered by the stored rollouts,
        then each group's advantages (``group_advantages``) in place of its block ones."""
        if not groups:  # TRL's optimizer step needs a batch; the own loop's learner skips an empty step
            raise ConfigError(f"{self.allocation.strategy.name} returned no groups to train on; TRL cannot take "
                              "an empty step")
        rows = self.store.get(np.concatenate([g.rollout_ids for g in groups]))
        steps = self.args.steps_per_generation
        if len(rows) % steps:
            raise ConfigError(f"{self.allocation.strategy.name} returned {len(rows)} rollouts to train on, not a "
                              f"multiple of steps_per_generation={steps}: TRL cuts a generation batch into that many "
                              "equal parts and would drop the rest; use steps_per_generation=1 with this strategy")
        logprobs = [r.logprobs for r in rows]
        self._replay = ([r.prompt_ids for r in rows], [r.ids.tolist() for r in rows], None,
                        [r.completion for r in rows], None if any(lp is None for lp in logprobs) else logprobs,
                        {}, None, [])
        self._replay_rewards = torch.as_tensor(np.stack([r.func_rewards for r in rows]), device=self.accelerator.device)
        try:
            output = super()._generate_and_score_completions([self.sampler.row(r.prompt_id) for r in rows])
        finally:
            self._replay = self._replay_rewards = None
        advantages, zero_std = group_advantages(groups, self.scale_rewards)
        output["advantages"] = torch.as_tensor(advantages, dtype=torch.float32, device=self.accelerator.device)
        # TRL logged its block statistics of this batch; these are the groups'
        self._metrics["train"]["frac_reward_zero_std"][-1] = float(zero_std.mean())
        logged = self._logs["advantages"]
        for _ in range(min(len(rows), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        return output, advantages

    def _last_report(self) -> dict:
        """The previous step's report for ``StepContext.last_update`` (empty at step 1), from its
        row as the runner rebuilds it: of the keys sim and real share, TRL's step gives
        ``zero_adv_share`` and ``informative_samples`` (no gradient-noise estimate: no ``noise_*``)."""
        return {k[len("learn_"):]: v for k, v in self.rows[-1].items() if k.startswith("learn_")}

    def _end_step(self, final: bool, evaluate: bool = True) -> None:
        """Add the table row of the step whose update has just finished (step 0 before the first),
        evaluated when due: every ``eval_every`` steps and, when ``final``, the last step."""
        if not self.rows:
            self.rows.append(self.allocation.row(0, [], {}, self._scores(evaluate), self._wall()))
        if self._pending is None:
            return
        step, groups, learned = self._pending
        self._pending = None
        due = evaluate and (step % self.eval_every == 0 or final)
        self.rows.append(self.allocation.row(step, groups, learned, self._scores(due), self._wall()))

    def _scores(self, due: bool) -> dict:
        """The evaluator's scores when due; without one, TRL's evaluation since the last row."""
        if self.evaluator is not None:
            return dict(self.evaluator()) if due else {}
        scores, self._trl_scores = self._trl_scores, {}
        return scores

    def _wall(self) -> float:
        """Seconds since ``train`` began: the table's ``wall_s``."""
        return time.perf_counter() - self._start

    def _log_counts(self, groups: list[Outcome]) -> None:
        """The ledger's counts into TRL's metrics: cumulative ones hold their latest value (as TRL
        keeps ``num_tokens``), per-step ones are averaged over the logging window."""
        metrics, total, step = self._metrics["train"], self.allocation.ledger.total, self.allocation.ledger.step
        for key, value in [("cum_rollouts", total.rollouts), ("cum_pilot_rollouts", total.pilot_rollouts),
                           ("cum_tokens", total.tokens), ("cum_rounds", total.rounds)]:
            metrics[f"allocbench/{key}"] = [float(value)]
        for key, value in [("step_rollouts", step.rollouts), ("step_pilot_rollouts", step.pilot_rollouts),
                           ("rounds", step.rounds), ("trained_rollouts", sum(g.n for g in groups)),
                           ("zero_var_groups", sum(g.rewards.min() == g.rewards.max() for g in groups))]:
            metrics[f"allocbench/{key}"].append(float(value))

    def table(self):
        """The run's rows so far: ``runs.parquet``'s table."""
        return results_table(self.rows)

    def _write_results(self) -> None:
        if not self.rows:
            return
        table = self.table()
        groups = self.groups_log.table(through_step=int(table["step"].max()))
        self.results_dir.mkdir(parents=True, exist_ok=True)
        write_table(table, self._results["runs.parquet"])
        write_groups(groups, self._results["groups.parquet"], table)
