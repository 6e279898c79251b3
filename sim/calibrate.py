"""Calibration: fit the simulator's parameters to real runs (``allocbench calibrate``).

Data. A folder written by ``allocbench compare --env real`` (or a leaderboard scenario folder):
``runs.parquet`` (one row per run x step) and ``groups.parquet`` (one row per run x step x
round x prompt). Only the runs of the fitting strategies (default grpo) are used; their shape
is fixed in the fitted scenario: ``train_batch``, ``group_size``, ``steps`` and the evaluation
cadence (the steps that carry an ``eval_acc``) are the real runs', the pool is the real
preset's size (or a large one, ``DEFAULT_POOL``: the simulator draws a fresh pool anyway).

Starting pass rates. The scenario's ``offsets`` (a mixture of ``COMPONENTS`` normals on the
logit scale; the initial pass rate of a prompt is the sigmoid of its offset) are fitted by
maximum marginal likelihood of observed counts: ``correct`` of ``n`` rollouts per prompt from a
probe (``allocbench probe``: every prompt, k samples each) or, without one, from the groups of
the first steps of the runs (generated ``main`` / ``pilot`` requests: uniform draws from the
pool; the first steps until ``START_GROUPS`` groups). A count's likelihood integrates the
binomial over the mixture on a logit grid (``GRID``), so a prompt seen 0 of 8 times is not
taken for a pass rate of exactly 0; EM on that grid fits the weights and means, with one
standard deviation shared by the components (a std per component is not identifiable from
8-rollout counts), from several starts. The free fit (std fitted too) has the best likelihood.
But counts of a few rollouts hardly tell a narrow spread of logits from a wide one (a prompt at
p = 0.01 and one at p = 0.1 both mostly show 0 of 8), and the spread decides how training moves
the pool (which prompts stay unsolved). So the study searches that std (``offset_std``): each
value's weights and means are refitted by EM, and the ``start`` part of the discrepancy charges
the likelihood the counts lose against the free fit.

Lengths. Token counts do not enter the discrepancy (it is measured in rollouts), but token-based
rules (duet's abort horizon) and ``tokens_to_target`` read them: ``len_correct``, ``len_wrong``,
``len_sigma`` and ``max_tokens`` are set from the fitting runs' generated groups
(``fit_lengths``), not searched.

Features. The probe, when its environment had prompt features (the real policy's pooled hidden
states), carries each prompt's out-of-fold ridge prediction of its pass-rate logit
(``allocbench.probe``); its R^2 is how much the features tell about pass rates before a rollout.
``feature_noise`` is set so that the simulator's features, probed the same way (the same k and
number of prompts, from the fitted scenario's starting pool), give the same R^2
(``fit_feature_noise``, bisection; the R^2 falls as the noise grows). It decides only the rules
that predict from features (pcl, gps); without a probe, or a probe without features, it stays
the base's. The probe serves the features also when the starting pass rates come from the
groups (``start="groups"``): on the tiny tier the policy gains fast in its first steps, and the
fits that start from those steps' groups match the real curves better than the ones that start
from the probe of the initial policy (docs/agreement.md). ``start="base"`` fits no starting pass rates:
they are the base scenario's, for a study that adds one parameter to a scenario already fitted
(below).

Dynamics. An Optuna study (TPE, seeded; resumable in any Optuna RDB storage, SQLite by default)
searches ``SPACE``: ``lr`` and ``noise_scale`` (log), ``drift``, ``skill_cap`` and
``loading_concentration`` (log), ``loading_spread`` (how unequally learnable the prompts are:
with a large spread some prompts barely move, so groups stay 0 of n all through training) and
``offset_std``; the other fields come from a base scenario (``default``). Its first trial is
the base's values with ``noise_scale`` at the real runs' measured gradient noise scale
(B_simple = mean(learn_noise_trace) / mean(learn_noise_grad_sq) over grpo's steps), when the
runs report it, and the free fit's std. ``stale_pull`` (what a rollout trained after its
drawing weights moved costs, ``sim.env``) is searched only when asked (``params``): runs that
train only fresh rollouts (grpo) do not move it. It is fitted to runs that train stale ones with
GRPO's own sampling, ``grpo`` with ``lag`` > 0, on the scenario fitted to the on-policy runs
(``base`` that TOML, ``start="base"``, ``params=("stale_pull",)``). ``eval_transfer`` (how
far the skills move the held-out prompts relative to the pool's) is searched only when asked:
the acc part compares held-out gains, the zero_var and pass_hist parts the pool's groups, and
with it the two need not move together (the tiny tier's real held-out set draws the arithmetic
levels alike while its pool is mostly two of them; held-out accuracy gains 0.78x the pool's
pass rate over a run, in all three regimes). ``nuisance_dims`` (an integer, drawn on a log
scale) is also searched only when asked: under Adam the cost of noise settles
at about lr x (noise per coordinate) x nuisance_dims, so it sizes that cost apart from lr and
noise_scale; the noise being spread over every coordinate, it also makes each skill's step
less noisy. Each trial runs the fitting strategies (with the real runs' hyper-parameters) on
seeds 0..S-1 of the simulator, the same seeds in every trial (common random numbers: trials
differ by their parameters only).

Discrepancy. Up to six parts, each in units of the noise it would show were the simulator
exact, so that they are comparable and 1 means "as close as seed noise allows" (3: three
standard errors off). Parts 1-4 and 6 are the RMSE between the real and the simulated
summary (a seed mean; for the spread, a std over seeds) over its points, divided by the real
summary's standard error over its R seeds (root mean square over the points, floored at
``FLOORS``) times sqrt(1 + R / S) (the simulated summary, over S seeds of similar spread, adds
its own), averaged over the fitting strategies. The total is the mean of the parts present.

1. ``acc``: held-out accuracy gain (eval_acc minus the run's step-0 eval_acc) against
   cumulative rollouts; the simulated seed-mean curve is interpolated at the real evaluation
   points (steps > 0). Gains, not levels: the simulator's held-out set is drawn like its pool,
   so it starts at the pool's mean pass rate, while a real held-out set may be harder or easier
   than the training pool; the level is fixed by the offsets fit, the gain by the dynamics.
2. ``zero_var``: the share of trained groups whose rewards were all equal
   (zero_var_groups / prompts_trained), per window of ``steps / WINDOWS`` steps.
3. ``pass_hist``: the histogram of correct / n of the trained groups (a group's rows summed:
   a pilot and its commit, reused answers; one bin per value of
   correct for a fixed n up to 16, else 10 bins) in each third of training: the spread of
   per-prompt pass rates over training, which the skill structure and ``loading_spread`` shape.
4. ``b_simple``: the log of the measured gradient noise scale, mean(learn_noise_trace) /
   mean(learn_noise_grad_sq) over the training steps, which the simulated learner reports
   with the real learner's estimator (standard error by jackknife over seeds; only when the
   real runs report it). Without it the runs of one batch size pin only a combination of
   ``lr`` and ``noise_scale`` (under Adam a noisy step moves about lr x signal / noise: twice
   the lr and four times the noise give nearly the same curves); with it, both.
5. ``start``: sqrt(2 (L_free - L(offset_std))), L the log-likelihood of the starting counts:
   the likelihood-ratio statistic of the searched spread against the free fit, ~|N(0, 1)| when
   the spread is compatible with the counts. Absent when ``offset_std`` is not searched.
6. ``spread``, compared only when asked (``parts``, ``calibrate --parts``): the log of the std
   over seeds of the held-out accuracy gain at each evaluation (how far runs that differ only
   by their seed drift apart), standard error 1 / sqrt(2 (R - 1)). It decides how many seeds a
   ranking needs: a simulator whose seeds agree more than the real ones promises rankings from
   fewer seeds than real training gives them. A study that compares it is another study.

Several regimes at once (``prepare(..., also=...)``, ``allocbench calibrate DIR DIR ... --lrs``).
Runs of the same policy and pool in other configurations (prompts per step, steps, learning
rate) are fitted by one scenario: each regime simulates it with its own runs' shape and with
``lr`` times that regime's learner lr over the first one's (the simulator's lr is a step size,
so it moves in proportion; the scenario's own lr is the first regime's), and each summary
part is the mean of the regimes' parts. The starting pass rates and lengths are fitted to the
counts of all the folders (one probe of the initial policy, when given, serves them all).
Real runs record their learner's lr per step (``learn_lr``, ``recorded_lr``); runs made before
that column, and the simulator's, need the lrs given (``--lrs``), which are checked against the
recorded ones where both exist. This asks one learner model to explain every regime: a fit to
one regime pins only the combinations of parameters its runs move, which need not be the ones
another regime moves.

Restarts (``choose_restart``, ``calibrate --restarts K``). grpo's runs leave the parameters that
order the other rules loosely pinned down: studies of the same runs from other TPE sampler
seeds end at fits of similar discrepancy far apart in the space, which rank the other rules
very differently (docs/agreement.md). K studies at sampler seeds s..s+K-1 are run, and the one kept is
the one whose best trial has the least discrepancy re-measured on fresh simulator seeds
(``RESCORE_SETS`` sets of S seeds after the study's own; ``fresh_totals``): a study's own best
value is the least of its many noisy trials, biased low by an amount that differs between
studies.

Everything here is numpy / pandas; the figure is drawn by ``analysis.calibration_figures`` and
the command line is ``cli.calibrate``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from allocbench.errors import AllocbenchError, ConfigError, DataTooHard
from allocbench.groups import GroupLog
from allocbench.metrics import evaluated, gain_spread, run_gains
from allocbench.probe import feature_predictions, feature_r2, r_squared, smoothed_logit
from allocbench.runner import RunConfig, run
from allocbench.strategy import make_strategy, strategy_class, strategy_names
from allocbench.tune.storage import open_storage, redact
from allocbench.tune.study import finished
from sim.env import SimWorld, log_choose, make_env
from sim.scenarios import Scenario, get_scenario, to_toml, with_fields

# name -> (low, high, log, step): the parameters the study searches; all but offset_std are
# scenario fields (offset_std: the std shared by the offset components, see the module); an
# integer step makes an integer parameter (Optuna's suggest_int)
SPACE = {
    "lr": (1e-4, 1.0, True, None),
    "noise_scale": (10.0, 1e6, True, None),
    "drift": (0.0, 20.0, False, None),
    "skill_cap": (0.2, 10.0, True, None),
    "loading_concentration": (0.05, 5.0, True, None),
    "loading_spread": (0.0, 2.5, False, None),
    "eval_transfer": (0.05, 2.0, True, None),
    "offset_std": (0.25, 3.0, False, 0.05),
    "stale_pull": (0.0, 10.0, False, None),
    "nuisance_dims": (16, 8192, True, 1),
}
# what a study searches unless told: stale_pull only moves runs that train stale rollouts (grpo
# with a lag; see the module), so a fit to on-policy runs leaves it the base's; nuisance_dims is
# an extra degree of freedom of the cost of noise and eval_transfer one of the held-out set,
# searched when asked (the committed studies search the rest)
DEFAULT_PARAMS = tuple(k for k in SPACE if k not in ("stale_pull", "nuisance_dims", "eval_transfer"))
STARTS = ("probe", "groups", "base")
SUMMARIES = ("acc", "zero_var", "pass_hist", "b_simple")  # the parts that compare run summaries, unless told
EXTRA_SUMMARIES = ("spread",)  # compared when asked (``parts``)
PARTS = SUMMARIES + EXTRA_SUMMARIES + ("start",)
# least standard error of a point (b_simple and spread: of its log)
FLOORS = {"acc": 0.005, "zero_var": 0.01, "pass_hist": 0.005, "b_simple": 0.1, "spread": 0.05}
SPREAD_FLOOR = 1e-3  # a seed std of the gain below this (0.1 points of accuracy) counts as this
WINDOWS = 20  # zero-variance windows over a run
THIRDS = 3  # pass-rate histograms over a run
START_GROUPS = 256  # groups of the first steps that set the starting pass rates (without a probe)
START_KINDS = ("main", "pilot")  # requests drawn uniformly from the pool
LENGTH_KINDS = ("main", "pilot", "commit")  # generated rollouts (reused ones cost no tokens)
COMPONENTS = 3
GRID = np.linspace(-12.0, 12.0, 481)  # logit grid of the offsets fit
STD_RANGE = (0.25, 3.0)  # the shared std of the offset components (free fit)
MIN_WEIGHT = 0.005
DEFAULT_POOL = 20_000
DEFAULT_BASE = "default"
STARTUP_TRIALS = 12  # random trials before TPE models the space


# ----------------------------------------------------------------------------- the real runs
def read_runs(folder: Path, strategies: tuple[str, ...], allow_sim: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and group logs of ``strategies`` in ``folder``; ConfigError (one line) if the
    folder, a table, the strategies' rows or a real environment is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"runs folder not found: {folder}" if not folder.exists()
                          else f"{folder} is a file; pass the folder that holds runs.parquet and groups.parquet")
    if not (folder / "runs.parquet").is_file():
        raise ConfigError(f"{folder} has no runs.parquet; pass a folder written by `allocbench compare --env real` "
                          "(or a leaderboard scenario folder)")
    if not (folder / "groups.parquet").is_file():
        raise ConfigError(f"{folder} has no groups.parquet (the per-group log calibration needs); "
                          "`allocbench compare --env real` writes it (--log-groups in the simulator)")
    runs, groups = _read(folder / "runs.parquet"), _read(folder / "groups.parquet")
    need = {"runs.parquet": (runs, ("env", "strategy", "seed", "step", "cum_rollouts", "eval_acc", "zero_var_groups",
                                    "prompts_trained", "train_batch", "group_size")),
            "groups.parquet": (groups, ("strategy", "seed", "step", "kind", "n", "correct", "tokens", "trained",
                                        "trained_step"))}
    for name, (table, columns) in need.items():
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ConfigError(f"{folder / name} lacks columns {', '.join(missing)}; not an allocbench table")
    for name, table in (("runs.parquet", runs), ("groups.parquet", groups)):
        held = sorted(set(table["strategy"]))
        if not set(strategies) <= set(held):
            lacking = [s for s in strategies if s not in held]
            raise ConfigError(f"{folder / name} has no rows of {', '.join(lacking)} (it holds "
                              f"{', '.join(held) or 'none'}); choose --fit-strategies among them")
    runs = runs[runs["strategy"].isin(strategies)].reset_index(drop=True)
    groups = groups[groups["strategy"].isin(strategies)].reset_index(drop=True)
    envs = sorted(set(runs["env"]))
    if envs != ["real"] and not (allow_sim and set(envs) <= {"real", "sim"}):
        raise ConfigError(f"{folder}: runs of env {', '.join(envs)}, not real; pass --allow-sim to calibrate on "
                          "simulator runs (a parameter-recovery check)")
    for column in ("train_batch", "group_size"):
        values = sorted(set(runs[column]))
        if len(values) != 1:
            raise ConfigError(f"{folder}: the fitting runs mix {column} {values}; calibrate on runs of one shape")
    return runs, groups


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow's errors: not a parquet file, truncated
        reason = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"cannot read {path}: {type(e).__name__}: {reason}") from None


def read_probe(folder: Path) -> pd.DataFrame:
    """A probe's table (``allocbench probe``): ``correct`` of ``k`` per prompt."""
    path = Path(folder) / "probe.parquet"
    if not path.is_file():
        raise ConfigError(f"--probe {folder}: no probe.parquet there (`allocbench probe` writes one)")
    table = _read(path)
    if not {"correct", "k"} <= set(table.columns) or table.empty:
        raise ConfigError(f"{path}: needs columns correct and k (a table of `allocbench probe`)")
    return table


def measured_noise_scale(runs: pd.DataFrame) -> float | None:
    """The real runs' B_simple (``noise_summary``): grpo's when it is among them, else the
    geometric mean over the strategies'; None if the runs do not report it."""
    table = noise_summary(runs)
    if table.empty:
        return None
    if (table["strategy"] == "grpo").any():
        table = table[table["strategy"] == "grpo"]
    return float(np.exp(table["log_b"].mean()))


def recorded_lr(runs: pd.DataFrame) -> float | None:
    """The learner's learning rate the runs record (``learn_lr``: its peak, after any warm-up),
    or None when they do not (real runs made before the column, the simulator's)."""
    if "learn_lr" not in runs:
        return None
    lr = pd.to_numeric(runs["learn_lr"], errors="coerce").dropna()
    return float(lr.max()) if len(lr) else None


def eval_cadence(runs: pd.DataFrame) -> int:
    """Steps between evaluations of the real runs (the smallest gap between evaluated steps)."""
    steps = np.unique(runs.loc[runs["eval_acc"].notna(), "step"].to_numpy())
    gaps = np.diff(steps)
    return int(gaps[gaps > 0].min()) if (gaps > 0).any() else max(int(runs["step"].max()), 1)


def strategy_settings(runs: pd.DataFrame, name: str) -> dict:
    """The hyper-parameters the real runs of ``name`` used (their ``hp_*`` columns), as
    ``make_strategy`` takes them; derived values that are not fields are left out."""
    cls = strategy_class(name)
    row = runs[runs["strategy"] == name].iloc[0]
    out = {}
    for f in fields(cls):
        value = row.get(f"hp_{f.name}")
        if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
            continue
        if isinstance(value, (np.floating, float)) and float(value).is_integer() and (
                isinstance(f.default, int) and not isinstance(f.default, bool) or "int" in str(f.type)):
            value = int(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[f.name] = value
    try:
        make_strategy(name, **out)
    except (AllocbenchError, TypeError):
        return {}  # the recorded values do not build this version's strategy: its defaults
    return out


# ------------------------------------------------------------------ starting pass-rate mixture
@dataclass(frozen=True)
class OffsetFit:
    offsets: tuple  # ((weight, mean, std), ...)
    loglik: float
    groups: int  # counts fitted
    source: str  # where the counts came from

    @property
    def mean_pass_rate(self) -> float:
        return mean_pass_rate(self.offsets)


def mean_pass_rate(offsets) -> float:
    """The expected initial pass rate of a prompt under the offsets mixture."""
    density = _mixture_density(offsets)
    return float(density @ _sigmoid(GRID))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _mixture_density(offsets) -> np.ndarray:
    """Probability mass of each GRID point under the mixture (sums to 1)."""
    out = np.zeros_like(GRID)
    for w, mu, sd in offsets:
        if sd <= 0:
            out[np.abs(GRID - mu).argmin()] += w
        else:
            dens = np.exp(-0.5 * ((GRID - mu) / sd) ** 2)
            out += w * dens / dens.sum()
    return out / out.sum()


def fit_offsets(correct, n, source: str = "", std: float | None = None, starts=None,
                iterations: int = 400) -> OffsetFit:
    """A ``COMPONENTS``-normal mixture of logit offsets that maximises the marginal likelihood
    of ``correct`` successes in ``n`` rollouts per prompt (EM on ``GRID``; see the module);
    the std shared by the components is fitted too, or fixed at ``std``."""
    correct, n = np.asarray(correct, dtype=np.int64), np.asarray(n, dtype=np.int64)
    if len(correct) == 0:
        raise ConfigError("no counts to fit the starting pass rates to")
    pairs, mult = np.unique(np.c_[correct, n], axis=0, return_counts=True)
    k, m = pairs[:, :1].astype(float), pairs[:, 1:].astype(float)
    p = _sigmoid(GRID)[None]
    log_lik = (log_choose(m, k)
               + k * np.log(np.clip(p, 1e-300, 1)) + (m - k) * np.log(np.clip(1 - p, 1e-300, 1)))
    lik = np.exp(log_lik)  # (count pairs, grid)
    if starts is None:
        starts = ((-4.0, 0.0, 3.5), (-3.0, -1.0, 1.0), (-2.0, 1.0, 4.0), (-6.0, -2.0, 0.5), (-1.0, 2.0, 6.0))
    best = None
    for start in starts:
        mu, w, sd = np.array(start, dtype=float), np.full(COMPONENTS, 1.0 / COMPONENTS), std or 1.0
        for _ in range(iterations):
            prior = w[:, None] * np.exp(-0.5 * ((GRID[None] - mu[:, None]) / sd) ** 2)
            prior /= prior.sum(axis=1, keepdims=True) / w[:, None]
            joint = lik[:, None, :] * prior[None]  # (pairs, component, grid)
            marginal = joint.sum(axis=(1, 2))
            post = (joint / marginal[:, None, None] * mult[:, None, None]).sum(axis=0)  # (component, grid)
            mass = post.sum(axis=1)
            new_w = np.maximum(mass / mass.sum(), MIN_WEIGHT)
            new_mu = np.clip((post @ GRID) / np.maximum(mass, 1e-12), GRID[0] + 2, GRID[-1] - 2)
            spread = float((post * (GRID[None] - new_mu[:, None]) ** 2).sum() / mass.sum())
            new_sd = float(np.clip(math.sqrt(spread), *STD_RANGE)) if std is None else float(std)
            done = np.abs(new_mu - mu).max() < 1e-6 and abs(new_sd - sd) < 1e-6
            mu, w, sd = new_mu, new_w / new_w.sum(), new_sd
            if done:
                break
        prior = w[:, None] * np.exp(-0.5 * ((GRID[None] - mu[:, None]) / sd) ** 2)
        prior /= prior.sum(axis=1, keepdims=True) / w[:, None]
        ll = float(mult @ np.log((lik[:, None, :] * prior[None]).sum(axis=(1, 2))))
        if best is None or ll > best[0] + 1e-9:
            best = (ll, w, mu, sd)
    ll, w, mu, sd = best
    order = np.argsort(mu)
    offsets = tuple((round(float(w[i]), 4), round(float(mu[i]), 3), round(sd, 3)) for i in order)
    return OffsetFit(offsets, ll, int(len(correct)), source)


def fit_lengths(groups: pd.DataFrame) -> dict:
    """The scenario's length fields from the generated groups (``LENGTH_KINDS``): ``len_correct``
    and ``len_wrong`` by least squares of each group's tokens on its correct and wrong rollouts,
    ``len_sigma`` from the groups' mean lengths around that fit (a group mean of n log-normal
    lengths has variance (exp(sigma^2) - 1) L^2 / n), ``max_tokens`` the longest group mean,
    rounded up (the per-rollout maximum is not logged)."""
    rows = groups[groups["kind"].isin(LENGTH_KINDS) & (groups["n"] > 0)]
    n, correct, tokens = (rows[c].to_numpy(dtype=float) for c in ("n", "correct", "tokens"))
    if len(rows) < 2:
        raise ConfigError("too few generated groups to fit rollout lengths")
    design = np.column_stack([correct, n - correct])
    (len_correct, len_wrong), *_ = np.linalg.lstsq(design, tokens, rcond=None)
    len_correct, len_wrong = (max(float(x), 1.0) for x in (len_correct, len_wrong))
    expected = (correct * len_correct + (n - correct) * len_wrong) / n
    spread = float(np.mean(n * (tokens / n - expected) ** 2) / np.mean(expected**2))
    return {"len_correct": len_correct, "len_wrong": len_wrong, "len_sigma": math.sqrt(math.log1p(max(spread, 0.0))),
            "max_tokens": int(math.ceil((tokens / n).max()))}


def start_counts(groups: pd.DataFrame, probe: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The (correct, n) counts the starting pass rates are fitted to, and where they came from."""
    if probe is not None:
        return (probe["correct"].to_numpy(), probe["k"].to_numpy(),
                f"a probe of {len(probe):,} prompts, k = {int(probe['k'].max())}")
    first = groups[groups["kind"].isin(START_KINDS)]
    if first.empty:
        raise ConfigError("the groups log has no main or pilot requests to take the starting pass rates from; "
                          "pass --probe")
    per_step = first.groupby("step").size().sort_index()
    cum = per_step.cumsum().to_numpy()
    last = per_step.index[min(int(np.searchsorted(cum, START_GROUPS)), len(cum) - 1)]
    chosen = first[first["step"] <= last]
    return (chosen["correct"].to_numpy(), chosen["n"].to_numpy(),
            f"{len(chosen):,} groups of the first {int(last)} steps")


# ----------------------------------------------------------------------------- summaries
@dataclass
class Summaries:
    """What the discrepancy compares, as tidy tables (one per part; ``se``: standard error of
    the seed mean); the figure draws them."""

    acc: pd.DataFrame  # strategy, step, cum_rollouts, eval_acc, gain, se
    zero_var: pd.DataFrame  # strategy, window, step, share, se
    pass_hist: pd.DataFrame  # strategy, third, bin, center, share, se
    b_simple: pd.DataFrame  # strategy, b_simple, log_b, se (of log_b); no row where not reported
    spread: pd.DataFrame  # strategy, step, cum_rollouts, std, log_std, se (of log_std)
    seeds: int

    def tagged(self, source: str) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name).assign(source=source) for name in SUMMARIES + EXTRA_SUMMARIES}


def _seed_mean(table: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    g = table.groupby(keys)[value]
    out = g.mean().rename(value).to_frame()
    out["se"] = (g.std(ddof=1) / np.sqrt(g.count())).fillna(np.nan)
    return out.reset_index()


def trained_groups(groups: pd.DataFrame) -> pd.DataFrame:
    """The groups each update trained on (strategy, seed, trained_step, prompt_id, n, correct):
    a group's rows summed (a pilot and its commit, reused answers)."""
    rows = groups[groups["trained"] & (groups["n"] > 0)]
    keys = ["strategy", "seed", "trained_step", "prompt_id"]
    return rows.groupby(keys, sort=False)[["n", "correct"]].sum().reset_index()


def pool_and_held_out_gains(runs: pd.DataFrame, groups: pd.DataFrame) -> tuple[float, float]:
    """What the runs gained over training, on the pool (the pass rate of the trained groups in
    the last tenth of the steps minus the first tenth's) and on the held-out set (eval_acc, the
    mean of the last three evaluations minus step 0's), all seeds pooled. The simulator's
    held-out set is drawn like its pool, so the two gain alike unless ``eval_transfer`` says
    otherwise; a ratio far from 1 says the real held-out set is not drawn like the pool."""
    trained = trained_groups(groups)
    steps = int(trained["trained_step"].max())
    tenth = max(steps // 10, 1)
    rate = lambda rows: rows["correct"].sum() / rows["n"].sum()  # noqa: E731
    pool = rate(trained[trained["trained_step"] > steps - tenth]) - rate(trained[trained["trained_step"] <= tenth])
    held_out = evaluated(runs).groupby("step")["eval_acc"].mean()
    return float(pool), float(held_out.iloc[-3:].mean() - held_out.iloc[0])


def hist_edges(groups: pd.DataFrame) -> np.ndarray:
    """Bin edges of the pass-rate histograms: one bin per value of correct when every trained
    group has the same n <= 16, else 10 equal bins."""
    sizes = np.unique(trained_groups(groups)["n"])
    if len(sizes) == 1 and sizes[0] <= 16:
        n = int(sizes[0])
        return (np.arange(n + 2) - 0.5) / n
    return np.linspace(0.0, 1.0, 11)


def summarise(runs: pd.DataFrame, groups: pd.DataFrame, steps: int, edges: np.ndarray) -> Summaries:
    """The three summaries of a set of runs (strategies x seeds) and their group logs."""
    ev = run_gains(runs)
    acc = _seed_mean(ev, ["strategy", "step"], "gain")
    means = ev.groupby(["strategy", "step"])[["cum_rollouts", "eval_acc"]].mean().reset_index()
    acc = acc.merge(means, on=["strategy", "step"])[["strategy", "step", "cum_rollouts", "eval_acc", "gain", "se"]]
    spread = seed_spread(runs)

    window = max(1, round(steps / WINDOWS))
    trained = runs[(runs["step"] > 0) & (runs["prompts_trained"] > 0)].copy()
    trained["share"] = trained["zero_var_groups"] / trained["prompts_trained"]
    trained["window"] = (trained["step"] - 1) // window
    per_seed = trained.groupby(["strategy", "seed", "window"])["share"].mean().reset_index()
    zero_var = _seed_mean(per_seed, ["strategy", "window"], "share")
    zero_var["step"] = zero_var["window"] * window + (window + 1) / 2

    rows = trained_groups(groups)
    third = np.minimum(THIRDS - 1, (rows["trained_step"].to_numpy() - 1) * THIRDS // max(steps, 1))
    bins = np.clip(np.digitize(rows["correct"].to_numpy() / rows["n"].to_numpy(), edges[1:-1]), 0, len(edges) - 2)
    counted = pd.DataFrame({"strategy": rows["strategy"].to_numpy(), "seed": rows["seed"].to_numpy(),
                            "third": third, "bin": bins})
    counts = counted.groupby(["strategy", "seed", "third", "bin"]).size()
    full = pd.MultiIndex.from_product([sorted(set(counted["strategy"])), sorted(set(counted["seed"])),
                                       range(THIRDS), range(len(edges) - 1)],
                                      names=["strategy", "seed", "third", "bin"])
    counts = counts.reindex(full, fill_value=0).rename("n").reset_index()
    totals = counts.groupby(["strategy", "seed", "third"])["n"].transform("sum")
    counts["share"] = np.where(totals > 0, counts["n"] / totals.where(totals > 0, 1), np.nan)
    pass_hist = _seed_mean(counts.dropna(subset=["share"]), ["strategy", "third", "bin"], "share")
    pass_hist["center"] = (edges[:-1] + edges[1:])[pass_hist["bin"].to_numpy()] / 2
    return Summaries(acc, zero_var, pass_hist, noise_summary(runs), spread, seeds=int(runs["seed"].nunique()))


def seed_spread(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and evaluation after step 0: the std over seeds of the held-out accuracy gain
    (``allocbench.metrics.gain_spread``), its log (floored at ``SPREAD_FLOOR``) and the standard
    error of that log, 1 / sqrt(2 (R - 1)) for R seeds (of a normal sample's log std)."""
    out = gain_spread(runs)
    out["log_std"] = np.log(np.maximum(out["std"].fillna(0.0), SPREAD_FLOOR))
    out["se"] = np.where(out["seeds"] > 1, 1 / np.sqrt(2 * np.maximum(out["seeds"] - 1, 1)), np.nan)
    return out[["strategy", "step", "cum_rollouts", "std", "log_std", "se"]]


def noise_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: the measured gradient noise scale B_simple = mean(learn_noise_trace) /
    mean(learn_noise_grad_sq) over its training steps (all seeds pooled), its log, and the
    standard error of the log by jackknife over seeds (NaN when a leave-one-out estimate is not
    positive and finite, or there is one seed). No row for a strategy whose runs do not report it."""
    rows = []
    if {"learn_noise_trace", "learn_noise_grad_sq"} <= set(runs.columns):
        steps = runs[runs["step"] > 0].dropna(subset=["learn_noise_trace", "learn_noise_grad_sq"])
        for strategy, part in steps.groupby("strategy"):
            per_seed = part.groupby("seed")[["learn_noise_trace", "learn_noise_grad_sq"]].agg(["sum", "count"])
            trace, grad = per_seed["learn_noise_trace"], per_seed["learn_noise_grad_sq"]
            total = trace["sum"].sum() / grad["sum"].sum() if grad["sum"].sum() > 0 else math.nan
            if not (math.isfinite(total) and total > 0):
                continue
            se = math.nan
            if len(per_seed) > 1:
                leave = ((trace["sum"].sum() - trace["sum"]) / (grad["sum"].sum() - grad["sum"])).to_numpy()
                if (leave > 0).all() and np.isfinite(leave).all():
                    logs = np.log(leave)
                    se = math.sqrt((len(logs) - 1) / len(logs) * float(((logs - logs.mean()) ** 2).sum()))
            rows.append({"strategy": strategy, "b_simple": total, "log_b": math.log(total), "se": se})
    return pd.DataFrame(rows, columns=["strategy", "b_simple", "log_b", "se"])


def discrepancy(real: Summaries, sim: Summaries, parts: tuple[str, ...] = SUMMARIES) -> dict[str, float]:
    """The summary ``parts`` (see the module) and their mean, ``total``."""
    inflate = math.sqrt(1 + real.seeds / max(sim.seeds, 1))
    out = {}
    for part in parts:
        values = []
        for strategy, r in getattr(real, part).groupby("strategy"):
            s = getattr(sim, part)
            s = s[s["strategy"] == strategy]
            if part == "b_simple":
                simulated = s["log_b"].to_numpy()[:1] if len(s) else np.array([np.nan])
                diff, se = simulated - r["log_b"].to_numpy(), r["se"].to_numpy()
            elif part == "acc":
                r = r[r["step"] > 0]
                curve = s.sort_values("cum_rollouts")
                simulated = np.interp(r["cum_rollouts"], curve["cum_rollouts"], curve["gain"]) if len(curve) else np.nan
                diff, se = simulated - r["gain"].to_numpy(), r["se"].to_numpy()
            else:
                keys = {"zero_var": ["window"], "pass_hist": ["third", "bin"], "spread": ["step"]}[part]
                value = "log_std" if part == "spread" else "share"
                joined = r.merge(s[keys + [value]], on=keys, how="left", suffixes=("", "_sim"))
                diff, se = (joined[f"{value}_sim"] - joined[value]).to_numpy(), joined["se"].to_numpy()
            if len(diff) == 0:
                continue
            # a point the simulation lacks (a run that stopped early) counts as far off
            diff = np.where(np.isnan(diff), 1.0, diff)
            rmse = math.sqrt(float(np.mean(diff**2)))
            noise = math.sqrt(float(np.nanmean(se**2))) if np.isfinite(se).any() else 0.0
            values.append(rmse / (max(noise, FLOORS[part]) * inflate))
        out[part] = float(np.mean(values)) if values else math.nan
    out["total"] = float(np.nanmean([out[p] for p in parts]))
    return out


# ----------------------------------------------------------------------------- simulation
def simulate(sc: Scenario, strategies: dict[str, dict], seeds: int, steps: int, eval_every: int,
             on_step: Callable[[dict], None] | None = None, first_seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy (name -> hyper-parameters) on seeds first_seed..first_seed+seeds-1 of
    ``sc``, with group logs."""
    tables, logs = [], []
    for name, params in strategies.items():
        strategy = make_strategy(name, **params)
        for seed in range(first_seed, first_seed + seeds):
            log = GroupLog()
            config = RunConfig(steps=steps, seed=seed, eval_every=eval_every)
            try:
                table = run(make_env(sc, seed=seed), strategy, config, on_step=on_step, groups=log)
            except DataTooHard as e:  # the run stopped: it is compared on the steps it made
                table = e.table
            tables.append(table)
            logs.append(log.table(through_step=int(table["step"].max())))
    return pd.concat(tables, ignore_index=True), pd.concat(logs, ignore_index=True)


# ----------------------------------------------------------------------------- the setup
@dataclass
class Setup:
    """Everything a calibration study needs: the real summaries, the scenario the trials vary
    (fitted offsets and the real runs' shape already in it), the strategies, seeds and space."""

    source: str  # the runs folder
    base: Scenario
    strategies: dict  # name -> hyper-parameters
    seeds: int
    steps: int
    eval_every: int
    space: dict
    real: Summaries
    edges: np.ndarray
    offsets: OffsetFit  # the free fit (std fitted too): the best likelihood of the counts
    counts: tuple  # (correct, n): what the offsets are fitted to
    real_acc0: float  # the real runs' seed-mean eval_acc at step 0
    b_simple: float | None
    env: str
    scenario: str  # the real runs' scenario (preset) name
    # (R^2, k, prompts) of the probe's feature predictions; None: feature_noise stays the base's
    features: tuple | None = None
    offsets_from_base: bool = False  # --start base: the base's offsets, the counts' fit unused
    # the other regimes fitted at once (their own runs, shape and summaries; the same offsets),
    # and this regime's lr relative to the first's: the searched lr is the first regime's
    also: tuple = ()
    lr_scale: float = 1.0
    parts: tuple = SUMMARIES  # the summary parts the discrepancy compares
    _offset_fits: dict = dataclasses.field(default_factory=dict, repr=False)

    def regimes(self) -> tuple:
        """This setup and the ones fitted with it, the first one first."""
        return (self,) + self.also

    def start_origin(self) -> str:
        """Where the starting pass rates come from, and their mean."""
        if self.offsets_from_base:
            return f"the base scenario {self.base.name!r} (mean {mean_pass_rate(self.base.offsets):.3f})"
        return f"{self.offsets.source} (mean {self.offsets.mean_pass_rate:.3f})"

    def offsets_at(self, std: float) -> OffsetFit:
        """The offsets fitted with their shared std fixed at ``std`` (cached)."""
        key = round(float(std), 6)
        if key not in self._offset_fits:
            self._offset_fits[key] = fit_offsets(*self.counts, source=self.offsets.source, std=key)
        return self._offset_fits[key]

    def start_part(self, params: dict) -> float:
        """The ``start`` part: sqrt(2 x the log-likelihood the counts lose at ``offset_std``
        against the free fit), a likelihood-ratio statistic in standard-error units; NaN when
        the std is not searched."""
        if "offset_std" not in params:
            return math.nan
        lost = self.offsets.loglik - self.offsets_at(params["offset_std"]).loglik
        return math.sqrt(2 * max(lost, 0.0))

    def scenario_for(self, params: dict, name: str | None = None, description: str | None = None) -> Scenario:
        values = {k: v for k, v in params.items() if k != "offset_std"}
        if "lr" in values:
            values["lr"] = values["lr"] * self.lr_scale
        if "offset_std" in params:
            values["offsets"] = self.offsets_at(params["offset_std"]).offsets
        if name is not None:
            values["name"] = name
        if description is not None:
            values["description"] = description
        return with_fields(self.base, values, "calibration")

    def evaluate(self, params: dict, on_step=None, name: str | None = None
                 ) -> tuple[dict, pd.DataFrame, pd.DataFrame, Summaries]:
        """Simulate ``params`` (the simulated tables name the scenario ``name``, default the
        base's): (discrepancy parts and total, runs, groups, summaries); the tables are the
        first regime's, the parts those of every regime (``evaluate_regimes``)."""
        parts, (first, *_) = self.evaluate_regimes(params, on_step, name)
        return parts, *first[1:]

    def evaluate_regimes(self, params: dict, on_step=None, name: str | None = None,
                         first_seed: int = 0) -> tuple[dict, list]:
        """Simulate ``params`` in every regime: the discrepancy (each summary part the mean of
        the regimes' parts, the start part once, ``total`` their mean; with several regimes
        also each regime's own total, ``total@SCENARIO``) and, per regime, (its parts, runs,
        groups, summaries). The study simulates seeds 0..seeds-1; ``first_seed`` moves them,
        to measure a fit on seeds it was not chosen on (its best trial's discrepancy is the
        least of many noisy ones)."""
        start = self.start_part(params)
        each = []
        for setup in self.regimes():
            runs, groups = simulate(setup.scenario_for(params, name=name), setup.strategies, setup.seeds, setup.steps,
                                    setup.eval_every, on_step, first_seed=first_seed)
            sim = summarise(runs, groups, setup.steps, setup.edges)
            own = discrepancy(setup.real, sim, self.parts)
            own["start"] = start
            own["total"] = float(np.nanmean([own[p] for p in self.parts + ("start",)]))
            each.append((own, runs, groups, sim))
        parts = {p: float(np.nanmean([own[p] for own, *_ in each])) if any(math.isfinite(own[p]) for own, *_ in each)
                 else math.nan for p in self.parts}
        parts["start"] = start
        parts["total"] = float(np.nanmean([parts[p] for p in self.parts + ("start",)]))
        if self.also:
            parts |= {f"total@{setup.scenario}": own["total"] for setup, (own, *_) in zip(self.regimes(), each)}
        return parts, each

    def first_params(self) -> dict:
        """The first trial: the base's values, noise_scale at the measured B_simple, the offsets'
        std at the free fit's."""
        out = {name: float(getattr(self.base, name)) for name in self.space if name != "offset_std"}
        if "noise_scale" in out and self.b_simple is not None:
            out["noise_scale"] = self.b_simple
        if "offset_std" in self.space:
            lo, hi, _, step = self.space["offset_std"]
            out["offset_std"] = round(lo + step * round((self.offsets.offsets[0][2] - lo) / step), 10)
        for name, (lo, hi, _, step) in self.space.items():
            out[name] = int(np.clip(round(out[name]), lo, hi)) if isinstance(step, int) else float(np.clip(out[name], lo, hi))
        return out

    def settings(self) -> dict:
        """What a study's trials depend on, in JSON; a study is resumed only with the same."""
        real = json.dumps({p: getattr(self.real, p).round(10).to_dict("list") for p in self.parts}
                          | {"counts": np.c_[self.counts].tolist()}, sort_keys=True)
        return json.loads(json.dumps({
            "source": self.source, "data": hashlib.sha1(real.encode()).hexdigest()[:16],
            "base": {f.name: getattr(self.base, f.name) for f in fields(self.base)
                     if f.name not in ("name", "description")},
            "strategies": self.strategies, "seeds": self.seeds, "steps": self.steps, "eval_every": self.eval_every,
            "space": {k: list(v) for k, v in self.space.items()},
        } | ({"parts": list(self.parts)} if self.parts != SUMMARIES else {}) | ({"also": [{k: v for k, v in other.settings().items() if k != "source"} | {"lr_scale": other.lr_scale}
                       for other in self.also]} if self.also else {})))


def check_inputs(strategies: tuple[str, ...], seeds: int, params: tuple[str, ...] | None,
                 base: str | Scenario) -> tuple[tuple[str, ...], Scenario]:
    """The searched parameters and the base scenario, after checking every argument that is
    not data (ConfigError, one line)."""
    if not strategies:
        raise ConfigError("--fit-strategies names no strategy")
    unknown = [s for s in strategies if s not in strategy_names()]
    if unknown:
        raise ConfigError(f"unknown strategy {', '.join(map(repr, unknown))}; known: {', '.join(strategy_names())}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds <= 0:
        raise ConfigError(f"--seeds must be a positive integer, got {seeds!r}")
    names = tuple(params) if params is not None else DEFAULT_PARAMS
    bad = [p for p in names if p not in SPACE]
    if bad or not names:
        raise ConfigError(f"--params: {'unknown ' + ', '.join(bad) if bad else 'none given'}; "
                          f"choose among {', '.join(SPACE)}")
    return names, get_scenario(base)


def check_parts(parts: tuple[str, ...] | None, seeds: int) -> tuple[str, ...]:
    """The summary parts the discrepancy compares, in their canonical order (ConfigError, one
    line, for an unknown or no name, or the spread part with one simulated seed per trial)."""
    if parts is None:
        return SUMMARIES
    known = SUMMARIES + EXTRA_SUMMARIES
    bad = [p for p in parts if p not in known]
    if bad or not parts:
        raise ConfigError(f"--parts: {'unknown ' + ', '.join(bad) if bad else 'none given'}; choose among {', '.join(known)}")
    if "spread" in parts and seeds < 2:
        raise ConfigError("--parts spread compares the spread over seeds: it needs --seeds 2 or more")
    return tuple(p for p in known if p in parts)


def prepare(folder: Path, strategies: tuple[str, ...] = ("grpo",), *, probe: pd.DataFrame | None = None,
            start: str = "probe", allow_sim: bool = False, seeds: int = 3, base: str | Scenario = DEFAULT_BASE, pool_size: int | None = None,
            params: tuple[str, ...] | None = None, tables: tuple[pd.DataFrame, pd.DataFrame] | None = None,
            also: tuple = (), parts: tuple[str, ...] | None = None) -> Setup:
    """Read the runs (or take ``tables``, what ``read_runs`` returned for them), fit the
    starting pass rates (to the probe's counts, or with ``start="groups"`` or no probe to the
    first steps' groups) and build the study's ``Setup``.

    ``also``: other regimes fitted at once, ``(folder, lr_scale)`` or ``(folder, lr_scale,
    tables)`` each: runs of the same policy and pool in another configuration (prompts per
    step, steps, learning rate), whose learner's lr is ``lr_scale`` times the first folder's.
    One scenario serves them all: each regime simulates it with its own runs' shape and the lr
    scaled; the starting pass rates and lengths are fitted to the counts of all the folders.

    ``parts``: the summary parts the discrepancy compares (default ``SUMMARIES``; ``spread``,
    the seed-to-seed spread of the accuracy gain, only when named)."""
    if start not in STARTS:
        raise ConfigError(f"--start must be one of {', '.join(STARTS)}, got {start!r}")
    names, base_sc = check_inputs(strategies, seeds, params, base)
    parts = check_parts(parts, seeds)
    if start == "base" and "offset_std" in names:
        raise ConfigError("--start base keeps the base scenario's starting pass rates: leave offset_std out of --params")
    folders = [(Path(folder), 1.0, tables)] + [(Path(entry[0]), entry[1], entry[2] if len(entry) > 2 else None)
                                                for entry in also]
    read = []
    for where, scale, given in folders:
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"{where}: the lr scale must be a positive number, got {scale!r}")
        runs, groups = given if given is not None else read_runs(where, strategies, allow_sim)
        steps = int(runs["step"].max())
        if steps < 1 or not (runs["step"] == 0).any() or runs.loc[runs["step"] == 0, "eval_acc"].isna().all():
            raise ConfigError(f"{where}: the runs have no step-0 evaluation and training steps to compare")
        if "spread" in parts and runs["seed"].nunique() < 2:
            raise ConfigError(f"{where}: --parts spread needs runs of 2 or more seeds, found 1")
        read.append((where, float(scale), runs, groups, steps))
    scenarios = [", ".join(sorted(set(map(str, runs["scenario"])))) for _, _, runs, _, _ in read]
    if len(set(scenarios)) < len(scenarios):
        twice = sorted({s for s in scenarios if scenarios.count(s) > 1})
        raise ConfigError(f"two folders hold runs of {', '.join(twice)}: pass one folder per regime")
    probe_counts = probe if start == "probe" else None
    if probe_counts is not None or len(read) == 1:  # one probe of the initial policy serves every regime
        correct, n, source = start_counts(read[0][3], probe_counts)
    else:
        counts = [start_counts(groups) for _, _, _, groups, _ in read]
        correct, n = (np.concatenate([c[i] for c in counts]) for i in (0, 1))
        source = " and ".join(f"{c[2]} of {s}" for c, s in zip(counts, scenarios))
    offsets = fit_offsets(correct, n, source)
    all_groups = pd.concat([groups for _, _, _, groups, _ in read], ignore_index=True)
    pool = pool_size or max(DEFAULT_POOL, int(all_groups["prompt_id"].nunique()) if "prompt_id" in all_groups else 0)
    start_offsets = {} if start == "base" else {"offsets": offsets.offsets}
    features = None
    if probe is not None and "feature_pred" in probe:
        features = (feature_r2(probe), int(probe["k"].max()), len(probe))
    where = f"{', '.join(strategies)} in {', '.join(str(w) for w, *_ in read)}"
    shared = with_fields(base_sc, dict(pool_size=int(pool), **start_offsets, **fit_lengths(all_groups)),
                         f"calibration of {where}")
    fit_cache: dict = {}
    setups = []
    for (where, scale, runs, groups, steps), scenario in zip(read, scenarios):
        edges = hist_edges(groups)
        B, N = int(runs["train_batch"].iloc[0]), int(runs["group_size"].iloc[0])
        regime_base = with_fields(shared, dict(train_batch=B, group_size=N, steps=steps, lr=shared.lr * scale),
                                  f"calibration of {where}")
        setups.append(Setup(
            features=features, offsets_from_base=start == "base", source=str(where.resolve()), base=regime_base,
            strategies={s: strategy_settings(runs, s) for s in strategies}, seeds=seeds, steps=steps,
            eval_every=eval_cadence(runs), space={k: SPACE[k] for k in names}, real=summarise(runs, groups, steps, edges),
            edges=edges, offsets=offsets, counts=(np.asarray(correct), np.asarray(n)),
            real_acc0=float(runs.loc[(runs["step"] == 0), "eval_acc"].mean()), b_simple=measured_noise_scale(runs),
            env=", ".join(sorted(set(runs["env"]))), scenario=scenario, lr_scale=scale, parts=parts,
            _offset_fits=fit_cache))
    first = setups[0]
    return dataclasses.replace(first, also=tuple(setups[1:])) if len(setups) > 1 else first


# ----------------------------------------------------------------------------- the study
def open_study(setup: Setup, storage: str, study_name: str, sampler_seed: int = 0):
    """Create or resume the study; a stored study made with other settings is refused."""
    import optuna

    from allocbench.tune.study import check_study_name

    check_study_name(study_name)
    study = optuna.create_study(storage=open_storage(storage), study_name=study_name, load_if_exists=True,
                                direction="minimize")
    settings = setup.settings()
    stored = with_new_fields(study.user_attrs.get("calibrate_settings"))
    trials = study.get_trials(deepcopy=False)
    # the runs folder's path is kept for the record, not compared: ``data`` is a hash of what
    # the trials are fitted to, so a clone elsewhere resumes the same study
    diff = [] if stored is None else sorted(k for k in set(stored) | set(settings)
                                           if k != "source" and stored.get(k) != settings.get(k))
    if diff:
        raise ConfigError(f"study {study_name!r} in {redact(storage)} was made with other settings "
                          f"({', '.join(diff)} differ); use the same inputs, another --study or another --storage")
    if stored is None:
        if trials:
            raise ConfigError(f"study {study_name!r} has trials but was not made by allocbench calibrate; "
                              "choose another --study")
        study.set_user_attr("calibrate_settings", settings)
        study.enqueue_trial(setup.first_params(), user_attrs={"first": True})
    # a seed per session: a resumed study does not replay the random start of the first
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed + len(trials), multivariate=True,
                                               n_startup_trials=STARTUP_TRIALS)
    return study


def with_new_fields(stored: dict | None) -> dict | None:
    """Stored study settings with the scenario fields added since they were stored at their
    defaults: a field comes with the default that runs the simulator as before it existed
    (``stale_pull = 0``), so the stored trials ran at it."""
    if stored is None or "base" not in stored:
        return stored
    defaults = {f.name: f.default for f in fields(Scenario)
                if f.name not in ("name", "description") and f.name not in stored["base"]}
    return {**stored, "base": {**json.loads(json.dumps(defaults)), **stored["base"]}}


class Objective:
    """One trial: the space's suggestions simulated and scored; parts kept as user attributes."""

    def __init__(self, setup: Setup):
        self.setup = setup

    def __call__(self, trial) -> float:
        from allocbench.tune.interrupts import Interrupts

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = {name: trial.suggest_int(name, lo, hi, log=log) if isinstance(step, int)
                  else trial.suggest_float(name, lo, hi, log=log, step=step)
                  for name, (lo, hi, log, step) in self.setup.space.items()}
        try:
            parts, *_ = self.setup.evaluate(params, on_step=lambda row: Interrupts.check())
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: failed now, run again on resume
            trial.set_user_attr("interrupted", True)
            raise
        except AllocbenchError as e:
            trial.set_user_attr("error", str(e))
            raise
        for name, value in parts.items():
            if name != "total":
                trial.set_user_attr(name, value)
        if not math.isfinite(parts["total"]):
            trial.set_user_attr("error", "no comparable points")
            raise AllocbenchError("the simulation has no points to compare")
        return parts["total"]


def optimize(study, setup: Setup, trials: int, log: Callable[[str], None] | None = None) -> None:
    """Run trials until the study holds ``trials`` finished ones (interrupted ones re-run first)."""
    from optuna.trial import TrialState

    from allocbench.tune.study import failure_line, requeue_interrupted, run_trials

    requeued = requeue_interrupted(study)
    if requeued and log:
        log(f"re-running {requeued} interrupted trial(s)")

    def say(study, trial):
        if log is None:
            return
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            parts = format_parts({p: trial.user_attrs.get(p, math.nan) for p in PARTS} | {"total": trial.value})
            log(f"trial {trial.number}: {parts}; best {best.value:.3f} (trial {best.number}); "
                + " ".join(f"{k}={v:.4g}" for k, v in trial.params.items()))
        elif trial.state == TrialState.FAIL:
            log(failure_line(trial))

    run_trials(study, lambda: Objective(setup), trials, say)


def trials_table(study, setup: Setup) -> pd.DataFrame:
    """One row per trial: number, state, the parameters, the discrepancy parts and total."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name.lower()}
        row.update({name: t.params.get(name, math.nan) for name in setup.space})
        row.update({p: t.user_attrs.get(p, math.nan) for p in setup.parts + ("start",)})
        row["total"] = t.value if t.value is not None else math.nan
        if setup.also:
            row.update({f"total@{r.scenario}": t.user_attrs.get(f"total@{r.scenario}", math.nan)
                        for r in setup.regimes()})
        row["first"] = bool(t.user_attrs.get("first", False))
        row["duration_s"] = t.duration.total_seconds() if t.duration is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def fitted(setup: Setup, params: dict, name: str) -> Scenario:
    """The fitted scenario: the setup's base with the best trial's ``params``."""
    description = (f"fitted by allocbench calibrate to {', '.join(setup.strategies)} on {setup.env} "
                   f"{setup.scenario} ({setup.real.seeds} seeds, {setup.steps} steps, B = {setup.base.train_batch}, "
                   f"n = {setup.base.group_size})" + "".join(f" and {r.scenario} (lr x {r.lr_scale:g})"
                                                          for r in setup.also))
    if setup.offsets_from_base:  # parameters added to a fitted scenario: say to which runs
        runs = ", ".join(name + "".join(f" {k}={v}" for k, v in settings.items())
                         for name, settings in setup.strategies.items())
        description = (f"{setup.base.description}; {', '.join(setup.space)} fitted to {runs} on {setup.env} "
                       f"{setup.scenario} ({setup.real.seeds} seeds)" + "".join(
                           f" and {r.scenario} (lr x {r.lr_scale:g})" for r in setup.also))
    sc = setup.scenario_for(params, name=name, description=description)
    if setup.features is None:
        return sc
    return with_fields(sc, {"feature_noise": fit_feature_noise(sc, *setup.features)}, "the fitted scenario")


FEATURE_NOISE_MAX = 20.0  # R^2 ~0 for any scenario's features well before this


def sim_feature_r2(sc: Scenario, feature_noise: float, k: int, prompts: int, seed: int = 0) -> float:
    """The R^2 a probe of ``prompts`` prompts with ``k`` samples each would give for the
    simulator's features at ``feature_noise`` (starting pool of seed ``seed``; the same draws
    for every noise level, so the R^2 falls smoothly as the noise grows)."""
    world = SimWorld(with_fields(sc, {"feature_noise": float(feature_noise), "pool_size": max(sc.pool_size, prompts)},
                                 "the feature fit"), seed)
    ids = np.arange(prompts)
    correct = np.random.default_rng([seed, 11]).binomial(k, world.pass_rate(ids))
    target = smoothed_logit(correct, k)
    return r_squared(target, feature_predictions(world.features(ids), target))


def fit_feature_noise(sc: Scenario, r2: float, k: int, prompts: int, seed: int = 0) -> float:
    """The ``feature_noise`` at which ``sim_feature_r2`` equals ``r2`` (bisection to 0.001;
    0 when even noise-free features predict less, ``FEATURE_NOISE_MAX`` when the measured R^2
    is at or below what that much noise leaves)."""
    at = lambda noise: sim_feature_r2(sc, noise, k, prompts, seed)  # noqa: E731
    if at(0.0) <= r2:
        return 0.0
    if at(FEATURE_NOISE_MAX) >= r2:
        return FEATURE_NOISE_MAX
    low, high = 0.0, FEATURE_NOISE_MAX
    while high - low > 1e-3:
        mid = (low + high) / 2
        low, high = (mid, high) if at(mid) > r2 else (low, mid)
    return round((low + high) / 2, 3)


def scenario_toml(sc: Scenario, header: list[str]) -> str:
    """The scenario file: comment lines ``header``, then ``to_toml``."""
    return "".join(f"# {line}\n" for line in header) + to_toml(sc)


def restarts_line(table: pd.DataFrame, seeds: int) -> str:
    """The header line of a fit chosen among restarts (``choose_restart``'s table; ``seeds``
    per set, as simulated per trial)."""
    sets = sum(c.startswith("fresh_total_") for c in table.columns)
    each = "; ".join(f"sampler seed {r.sampler_seed}: {r.total:.3f} -> {r.fresh_total:.3f}" + (" (kept)" if r.chosen else "")
                     for r in table.itertuples())
    return (f"kept of {len(table)} restarts by the discrepancy of each one's best trial on fresh simulator seeds "
            f"{seeds}-{seeds * (sets + 1) - 1} (the mean of {sets} sets of {seeds}), its study's own -> fresh: {each}")


def header_lines(setup: Setup, parts: dict, study_name: str, storage: str, trial: int, finished: int,
                 params: dict, path: str = "SCENARIO.toml") -> list[str]:
    b = f"{setup.b_simple:,.0f} rollouts" if setup.b_simple is not None else "not reported"
    if setup.offsets_from_base:
        origin = setup.start_origin()
    else:
        start = setup.offsets_at(params["offset_std"]) if "offset_std" in params else setup.offsets
        origin = (f"{setup.offsets.source}: fitted mixture's mean pass rate {start.mean_pass_rate:.3f}, "
                  f"log-likelihood {start.loglik:.1f} (free fit: std {setup.offsets.offsets[0][2]:g}, "
                  f"{setup.offsets.loglik:.1f})")
    return [
        f"allocbench calibrate: study {study_name!r} ({redact(storage)}), best of {finished} finished trials: "
        f"trial {trial}",
        f"fitted to {', '.join(setup.strategies)} runs in {setup.source} (env {setup.env}, {setup.scenario}; "
        f"{setup.real.seeds} seeds, {setup.steps} steps, B = {setup.base.train_batch}, n = {setup.base.group_size}, "
        f"eval every {setup.eval_every}); simulated on {setup.seeds} seeds per trial",
        f"starting pass rates from {origin}; the real held-out accuracy at step 0 is {setup.real_acc0:.3f} "
        "(the acc part compares gains)",
        "discrepancy (RMSE over the real runs' seed noise; ~1 = within noise"
        + (f"; each part the mean over the {len(setup.regimes())} regimes" if setup.also else "")
        + f"): {format_parts(parts)}",
        f"searched {', '.join(setup.space)}: " + ", ".join(f"{k} = {v:.4g}" for k, v in params.items())
        + f"; measured B_simple of the real runs: {b}",
    ] + [f"also fitted to the runs in {r.source} ({r.scenario}; {r.real.seeds} seeds, {r.steps} steps, "
         f"B = {r.base.train_batch}, n = {r.base.group_size}, eval every {r.eval_every}, lr x {r.lr_scale:g}): "
         f"discrepancy there {parts.get(f'total@{r.scenario}', math.nan):.3f}, here "
         f"{parts.get(f'total@{setup.scenario}', math.nan):.3f}; this scenario in that regime: "
         f"{regime_command(setup, r, path)}" for r in setup.also] + ([] if setup.features is None else [
        f"feature_noise matched to the probe's feature R^2 {setup.features[0]:.3f} (ridge on the prompts' "
        f"features, out of fold; {setup.features[2]:,} prompts, k = {setup.features[1]})"])


def regime_command(setup: Setup, regime: Setup, path: str) -> str:
    """The ``allocbench scenarios`` command that moves the fitted scenario (``path``) to ``regime``."""
    changes = [f"--set {f}={getattr(regime.base, f)}" for f in ("train_batch", "group_size", "steps")
               if getattr(regime.base, f) != getattr(setup.base, f)]
    return f"allocbench scenarios --show {path} " + " ".join(changes + [f"--scale lr={regime.lr_scale:g}"])


def format_parts(parts: dict) -> str:
    """``total 1.23 (acc 1.0, zero_var 0.9, ...)``, parts that were not measured left out."""
    shown = ", ".join(f"{p} {parts[p]:.2f}" for p in PARTS if math.isfinite(parts.get(p, math.nan)))
    return f"total {parts['total']:.3f} ({shown})"


def best_params(study) -> tuple[int, dict]:
    best = study.best_trial
    return best.number, dict(best.params)


RESCORE_SETS = 3  # sets of fresh simulator seeds a restart's best trial is re-measured on


def fresh_totals(setup: Setup, params: dict, sets: int = RESCORE_SETS) -> list[float]:
    """The discrepancy total of ``params`` on ``sets`` sets of simulator seeds the studies did
    not choose on, each simulated as a trial is (``setup.seeds`` seeds: set k is seeds
    (k+1)S..(k+2)S-1, S = ``setup.seeds``; the studies use 0..S-1)."""
    return [setup.evaluate_regimes(params, first_seed=setup.seeds * (k + 1))[0]["total"] for k in range(sets)]


def choose_restart(setup: Setup, restarts: list[tuple[str, int, object]], sets: int = RESCORE_SETS
                   ) -> tuple[int, pd.DataFrame]:
    """Of several studies of the same setup, ``(name, sampler seed, study)`` each, the index of
    the one whose best trial has the least discrepancy on fresh simulator seeds (``fresh_totals``),
    and one row per study. Why not the studies' own best values: each is the least of many noisy
    trials, biased low by an amount that differs between studies; and why restarts at all: the
    grpo runs a study fits leave the parameters that order the other rules loosely pinned down,
    so studies from other sampler seeds end in different places (docs/agreement.md)."""
    rows = []
    for name, seed, study in restarts:
        number, params = best_params(study)
        fresh = fresh_totals(setup, params, sets)
        rows.append({"study": name, "sampler_seed": seed, "best_trial": number,
                     "finished": finished(study),
                     "total": study.best_value, "fresh_total": float(np.mean(fresh))}
                    | {f"fresh_total_{k}": v for k, v in enumerate(fresh)} | params)
    table = pd.DataFrame(rows)
    if table["fresh_total"].isna().all():
        raise AllocbenchError("no restart's best trial has points to compare on fresh simulator seeds")
    chosen = int(table["fresh_total"].idxmin())
    table.insert(1, "chosen", table.index == chosen)
    return chosen, table
