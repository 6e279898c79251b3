"""Run several strategies x seeds on one scenario into one tidy table."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pandas as pd

from allocbench.envs import make_env
from allocbench.errors import DataTooHard
from allocbench.groups import GroupLog
from allocbench.runner import RunConfig, run
from allocbench.strategy import Strategy


def _one_run(kind: str, scenario: str, strategy: Strategy, config: RunConfig, log_groups: bool, on_step=None):
    env = make_env(kind, scenario, seed=config.seed)
    log = GroupLog() if log_groups else None
    try:
        table, problem = run(env, strategy, config, on_step=on_step, groups=log), None
    except DataTooHard as e:
        # the run's rows up to the failing step are kept; the reason is reported
        table, problem = e.table, f"{strategy.name} seed {config.seed}: {e}"
    last = int(table["step"].max()) if len(table) else 0
    return table, (log.table(through_step=last) if log is not None else None), problem


def compare(scenario: str, strategies: list[Strategy], seeds: list[int], config: RunConfig,
            kind: str = "sim", jobs: int = 1, progress: bool = True,
            log_groups: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """All (strategy, seed) runs; returns their rows concatenated and, with ``log_groups``, their
    per-group logs concatenated (else None). Runs that stop early (a filtering strategy that
    cannot fill its batch) keep their rows and are reported."""
    from allocbench.progress import progress_bar

    runs = [(s, replace(config, seed=seed)) for s in strategies for seed in seeds]
    bar = progress_bar(total=len(runs) * config.steps, unit="step", disable=not progress,
                       desc=f"{scenario}: {len(strategies)} strategies x {len(seeds)} seeds")
    results = []
    if jobs == 1:
        for strategy, cfg in runs:
            results.append(_one_run(kind, scenario, strategy, cfg, log_groups, on_step=lambda row: bar.update()))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one_run, kind, scenario, s, cfg, log_groups) for s, cfg in runs]
            for future in futures:
                results.append(future.result())
                bar.update(config.steps)
    bar.close()
    for _, _, problem in results:
        if problem:
            print(f"allocbench: warning: {problem}", file=sys.stderr)
    table = pd.concat([t for t, _, _ in results], ignore_index=True)
    groups = pd.concat([g for _, g, _ in results], ignore_index=True) if log_groups else None
    return table, groups
