"""A probe of the training pool: every prompt's pass rate under the current policy, measured
with ``k`` samples each in batched generation rounds.

The probe samples through the environment's sampler directly, not through a run's ledger: it
is a measurement of the policy, not training, and spends nothing a run counts. Its table has
one row per prompt: ``prompt_id``, ``k``, ``correct``, ``pass_rate`` (correct / k), ``tokens``
and what the environment knows of the prompt (``prompt_<name>``: the simulator's true pass
rate, a dataset's difficulty such as the arithmetic level).

How much the prompt features tell. Where the environment has features (``Environment.features``:
the policy's pooled hidden states in the real tier, a noisy view of what sets the pass rates in
the simulator), the table also holds ``feature_pred``: each prompt's out-of-fold prediction of
its smoothed pass-rate logit, log((correct + 1/2) / (k - correct + 1/2)), by ridge regression on
the features (``FOLDS``-fold cross-validation, features standardised on each training fold,
the ridge strength chosen among ``RIDGE_ALPHAS`` by cross-validated R^2). ``feature_r2`` of the
table is then the share of the logits' variance the features predict for prompts they were not
fitted on: the ceiling of what a pass-rate predictor on these features (pcl, gps) can know
before it sees a rollout. ``allocbench calibrate --probe`` matches the simulator's
``feature_noise`` to it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from allocbench.errors import ConfigError
from allocbench.protocols import Environment


FOLDS = 5
RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # per prompt of a training fold


def check_k(k) -> None:
    if not isinstance(k, int) or k <= 0:
        raise ConfigError(f"--k must be a positive integer, got {k!r}")


def probe(env: Environment, k: int, batch_prompts: int = 256,
          progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Pass rates of every training prompt of ``env`` from ``k`` samples each; one sampler
    call (generation round) per ``batch_prompts`` prompts; ``feature_pred`` when the
    environment has features and at least 2 x ``FOLDS`` prompts."""
    check_k(k)
    if batch_prompts <= 0:
        raise ConfigError(f"probe batch must be positive, got {batch_prompts}")
    ids = np.asarray(env.prompt_ids)
    parts, features = [], []
    for start in range(0, len(ids), batch_prompts):
        chunk = ids[start:start + batch_prompts]
        outcomes = {o.prompt_id: o for o in env.sampler.sample({int(i): k for i in chunk})}
        got = [outcomes[int(i)] for i in chunk]
        part = {"prompt_id": chunk, "k": np.full(len(chunk), k),
                "correct": np.array([int((o.rewards > 0.5).sum()) for o in got]),
                "tokens": np.array([int(o.tokens.sum()) for o in got])}
        if env.describe is not None:
            part.update({f"prompt_{name}": np.asarray(v) for name, v in env.describe(chunk).items()})
        if env.features is not None:
            features.append(np.asarray(env.features(chunk), dtype=float))
        parts.append(pd.DataFrame(part))
        if progress is not None:
            progress(len(chunk))
    table = pd.concat(parts, ignore_index=True)
    table.insert(3, "pass_rate", table["correct"] / table["k"])
    if features and len(table) >= 2 * FOLDS:
        table["feature_pred"] = feature_predictions(np.concatenate(features), smoothed_logit(table["correct"], k))
    return table.assign(env=env.name, scenario=env.scenario)


def smoothed_logit(correct, k) -> np.ndarray:
    """log((correct + 1/2) / (k - correct + 1/2)): a k-sample count's logit, finite at 0 and k."""
    correct = np.asarray(correct, dtype=float)
    return np.log((correct + 0.5) / (k - correct + 0.5))


def feature_predictions(features: np.ndarray, target: np.ndarray, folds: int = FOLDS,
                        alphas=RIDGE_ALPHAS, seed: int = 0) -> np.ndarray:
    """Out-of-fold ridge predictions of ``target`` from ``features`` (rows = prompts): each
    prompt predicted by a fit on the other folds, features standardised on the training
    folds; the ridge strength (``alphas``, times the training rows) is the one with the best
    cross-validated R^2 over all folds."""
    x, y = np.asarray(features, dtype=float), np.asarray(target, dtype=float)
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    preds = np.empty((len(alphas), len(y)))
    for f in range(folds):
        train, test = fold != f, fold == f
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        xt, xs = (x[train] - mean) / scale, (x[test] - mean) / scale
        yt_mean = y[train].mean()
        # one eigendecomposition of the Gram matrix serves every alpha
        values, vectors = np.linalg.eigh(xt.T @ xt)
        projected = vectors.T @ (xt.T @ (y[train] - yt_mean))
        for a, alpha in enumerate(alphas):
            coef = vectors @ (projected / (values + alpha * train.sum()))
            preds[a, test] = yt_mean + xs @ coef
    best = int(np.argmax([r_squared(y, p) for p in preds]))
    return preds[best]


def r_squared(target, prediction) -> float:
    """1 - SSE / SST (NaN when the target does not vary)."""
    y, p = np.asarray(target, dtype=float), np.asarray(prediction, dtype=float)
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / total if total > 0 else float("nan")


def feature_r2(table: pd.DataFrame) -> float:
    """The out-of-fold R^2 of a probe table's ``feature_pred`` against its smoothed logits."""
    if "feature_pred" not in table:
        raise ConfigError("the probe has no feature predictions (its environment has no prompt features, "
                          f"or it probed fewer than {2 * FOLDS} prompts)")
    return r_squared(smoothed_logit(table["correct"], table["k"]), table["feature_pred"])
