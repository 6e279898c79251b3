"""Small hand-made results tables for the analysis tests (schema-complete, deterministic)."""

import numpy as np
import pandas as pd
import pytest

from allocbench.schema import COLUMNS

# accuracy at eval steps 0, 2, 4, 6, 8 per strategy (every seed the same plus seed * 0.01)
ACC = {"grpo": [0.5, 0.6, 0.7, 0.8, 0.9],
       "dapo": [0.5, 0.55, 0.6, 0.65, 0.7],
       "fast": [0.5, 0.7, 0.8, 0.9, 0.95]}
PER_STEP = {"grpo": 100, "dapo": 300, "fast": 150}  # rollouts generated per step
PILOT = {"grpo": 0, "dapo": 0, "fast": 50}
ZERO_VAR = {"grpo": 2, "dapo": 0, "fast": 0}  # of 10 trained groups of 10 rollouts


def make_table(strategies=("grpo", "dapo", "fast"), seeds=(0, 1, 2), env="sim", scenario="hand",
               seed_shift=0.0, acc=None, hp=None) -> pd.DataFrame:
    """Steps 0..8, evaluated every 2 steps; 10 groups of 10 rollouts trained per step."""
    acc = acc or ACC
    rows = []
    for s in strategies:
        for seed in seeds:
            for step in range(9):
                ev = step % 2 == 0
                k = step // 2
                n = PER_STEP[s] if step else 0
                var = 0.05 + 0.02 * (step % 5) + 0.05 * list(ACC).index(s) if step else np.nan
                rows.append({
                    "env": env, "scenario": scenario, "strategy": s, "seed": seed, "step": step,
                    "train_batch": 10, "group_size": 10, "epoch": 0, "cum_rollouts": step * PER_STEP[s], "cum_tokens": step * PER_STEP[s] * 100,
                    "step_rollouts": n, "pilot_rollouts": PILOT[s] if step else 0,
                    "feature_prompts": 0, "feature_tokens": 0,
                    "trained_rollouts": 100 if step else 0, "reused_rollouts": 0,
                    "rounds": (2 if s == "fast" and step % 2 else 1) if step else 0,
                    "prompts_seen": 10 if step else 0, "prompts_trained": 10 if step else 0,
                    "zero_var_groups": ZERO_VAR[s] if step else 0,
                    "train_reward": 0.5 if step else np.nan, "group_reward_var": var,
                    "eval_acc": acc[s][k] + seed_shift * seed if ev else np.nan,
                    "eval_solved_share": 0.1 + 0.05 * k if ev else np.nan,
                    "eval_unsolved_share": 0.3 - 0.05 * k if ev else np.nan,
                    "wall_s": float(step), "learn_signal": np.sqrt(var) if step else np.nan,
                    **({f"hp_{k2}": v for k2, v in (hp or {}).get(s, {}).items()})})
    table = pd.DataFrame(rows)
    return table[list(COLUMNS) + [c for c in table.columns if c not in COLUMNS]]


@pytest.fixture
def table():
    return make_table()
