"""Run several strategies x seeds on one scenario into one tidy table."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pandas as pd

from allocbench.envs import make_env
from allocbench.errors import DataTooHard
from allocbench.runner import RunConfig, run
from allocbench.strategy import Strategy


def _one_run(kind: str, scenario: str, strategy: Strategy, config: RunConfig, on_step=None):
    env = make_env(kind, scenario, seed=config.seed)
    try:
        return run(env, strategy, config, on_step=on_step), None
    except DataTooHard as e:
        # the run's rows up to the failing step are kept; the reason is reported
        return e.table, f"{strategy.name} seed {config.seed}: {e}"


def compare(scenario: str, strategies: list[Strategy], seeds: list[int], config: RunConfig,
            kind: str = "sim", jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """All (strategy, seed) runs; returns their rows concatenated. Runs that stop early
    (a filtering strategy that cannot fill its batch) keep their rows and are reported."""
    from tqdm import tqdm

    runs = [(s, replace(config, seed=seed)) for s in strategies for seed in seeds]
    bar = tqdm(total=len(runs) * config.steps, unit="step", disable=not progress,
               desc=f"{scenario}: {len(strategies)} strategies x {len(seeds)} seeds", file=sys.stderr)
    results = []
    if jobs == 1:
        for strategy, cfg in runs:
            results.append(_one_run(kind, scenario, strategy, cfg, on_step=lambda row: bar.update()))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one_run, kind, scenario, s, cfg) for s, cfg in runs]
            for future in futures:
                results.append(future.result())
                bar.update(config.steps)
    bar.close()
    for _, problem in results:
        if problem:
            print(f"allocbench: warning: {problem}", file=sys.stderr)
    return pd.concat([t for t, _ in results], ignore_index=True)
