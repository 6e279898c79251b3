"""A probe of the training pool: every prompt's pass rate under the current policy, measured
with ``k`` samples each in batched generation rounds.

The probe samples through the environment's sampler directly, not through a run's ledger: it
is a measurement of the policy, not training, and spends nothing a run counts. Its table has
one row per prompt: ``prompt_id``, ``k``, ``correct``, ``pass_rate`` (correct / k), ``tokens``
and what the environment knows of the prompt (``prompt_<name>``: the simulator's true pass
rate, a dataset's difficulty such as the arithmetic level).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from allocbench.errors import ConfigError
from allocbench.protocols import Environment


def check_k(k) -> None:
    if not isinstance(k, int) or k <= 0:
        raise ConfigError(f"--k must be a positive integer, got {k!r}")


def probe(env: Environment, k: int, batch_prompts: int = 256,
          progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Pass rates of every training prompt of ``env`` from ``k`` samples each; one sampler
    call (generation round) per ``batch_prompts`` prompts."""
    check_k(k)
    if batch_prompts <= 0:
        raise ConfigError(f"probe batch must be positive, got {batch_prompts}")
    ids = np.asarray(env.prompt_ids)
    parts = []
    for start in range(0, len(ids), batch_prompts):
        chunk = ids[start:start + batch_prompts]
        outcomes = {o.prompt_id: o for o in env.sampler.sample({int(i): k for i in chunk})}
        got = [outcomes[int(i)] for i in chunk]
        part = {"prompt_id": chunk, "k": np.full(len(chunk), k),
                "correct": np.array([int((o.rewards > 0.5).sum()) for o in got]),
                "tokens": np.array([int(o.tokens.sum()) for o in got])}
        if env.describe is not None:
            part.update({f"prompt_{name}": np.asarray(v) for name, v in env.describe(chunk).items()})
        parts.append(pd.DataFrame(part))
        if progress is not None:
            progress(len(chunk))
    table = pd.concat(parts, ignore_index=True)
    table.insert(3, "pass_rate", table["correct"] / table["k"])
    return table.assign(env=env.name, scenario=env.scenario)
