import numpy as np
import pandas as pd
import pytest

from allocbench.metrics import default_target, first_reaching, gain_spread, speedup_table


def hand_table():
    """Two seeds each of grpo (1000 rollouts per step) and pc (1500 per step)."""
    rows = []
    accs = {("grpo", 0): [0.1, 0.3, 0.5, 0.6], ("grpo", 1): [0.1, 0.3, 0.4, 0.6],
            ("pc", 0): [0.1, 0.5, 0.6, 0.7], ("pc", 1): [0.1, 0.4, 0.6, 0.7]}
    for (strategy, seed), acc in accs.items():
        per_step = 1000 if strategy == "grpo" else 1500
        for step, a in enumerate(acc):
            rows.append(dict(env="sim", scenario="t", strategy=strategy, seed=seed, step=step,
                             cum_rollouts=step * per_step, cum_tokens=step * per_step * 10,
                             rounds=1, eval_acc=a))
    return pd.DataFrame(rows)


def test_target_defaults_to_grpo_peak_of_the_seed_mean():
    assert default_target(hand_table()) == pytest.approx(0.6)


def test_rollouts_to_target_by_hand():
    table = hand_table()
    out = speedup_table(table, target=0.6).set_index("strategy")
    # grpo seed mean: 0.1, 0.3, 0.45, 0.6 -> reaches 0.6 at step 3 = 3000 rollouts
    # pc seed mean: 0.1, 0.45, 0.6, 0.7 -> step 2 = 3000 rollouts
    assert out.loc["grpo", "rollouts_to_target"] == 3000
    assert out.loc["pc", "rollouts_to_target"] == 3000
    assert out.loc["pc", "tokens_to_target"] == 30000
    assert out.loc["pc", "speedup_vs_grpo"] == pytest.approx(1.0)
    out = speedup_table(table, target=0.45).set_index("strategy")
    # grpo mean reaches 0.45 at step 2 (2000); pc at step 1 (1500); per seed: grpo 2000/3000
    assert out.loc["grpo", "rollouts_to_target"] == 2000
    assert out.loc["pc", "rollouts_to_target"] == 1500
    assert out.loc["pc", "speedup_vs_grpo"] == pytest.approx(2000 / 1500)
    assert out.loc["grpo", "rollouts_to_target_std"] == pytest.approx(np.std([2000, 3000], ddof=1))
    # per seed ratios: seed 0: 2000/1500, seed 1: 3000/3000
    assert out.loc["pc", "speedup_vs_grpo_std"] == pytest.approx(np.std([2000 / 1500, 1.0], ddof=1))
    assert "speedup_vs_dapo" not in out.columns
    assert out.loc["grpo", "tokens_to_target_std"] == pytest.approx(np.std([20000, 30000], ddof=1))
    assert out.loc["pc", "final_acc"] == pytest.approx(0.7) and out.loc["pc", "final_acc_std"] == 0
    assert out.loc["pc", "rounds_per_step"] == 1 and out.loc["pc", "rounds_per_step_std"] == 0
    assert out.runs_stopped.tolist() == [0, 0]
    stopped = speedup_table(table[(table.strategy == "grpo") | (table.step < 2)], target=0.45)
    assert stopped.set_index("strategy").loc["pc", "runs_stopped"] == 2


def test_a_seed_mean_equal_to_the_target_reaches_it_despite_rounding():
    table = hand_table()
    table.loc[table.step == 3, "eval_acc"] = 0.7
    table = pd.concat([table, table[table.seed == 0].assign(seed=2)])
    assert table[(table.strategy == "grpo") & (table.step == 3)].eval_acc.mean() < 0.7  # 0.69999...
    assert speedup_table(table, 0.7).set_index("strategy").loc["grpo", "rollouts_to_target"] == 3000


def test_a_target_never_reached_gives_nan():
    table = hand_table()
    out = speedup_table(table, target=0.65).set_index("strategy")
    assert np.isnan(out.loc["grpo", "rollouts_to_target"])
    assert out.loc["pc", "seeds_reached"] == 2 and out.loc["grpo", "seeds_reached"] == 0
    assert np.isnan(first_reaching(table[table.strategy == "grpo"], 0.9))


def test_rollouts_to_target_is_the_first_crossing_even_if_the_curve_falls_back():
    from allocbench.metrics import rollouts_to_target

    acc = np.array([0.2, 0.61, 0.55, 0.58, 0.62, 0.7])
    spend = np.arange(6) * 100.0
    assert rollouts_to_target(acc, spend, 0.6) == 100.0  # not 400, where it stays above
    # vectorised over curves (the bootstrap's draws), NaN where a curve never gets there
    both = rollouts_to_target(np.stack([acc, acc * 0.5]), np.stack([spend, spend]), 0.6)
    assert both[0] == 100.0 and np.isnan(both[1])
    # a seed mean a rounding error below the target reaches it
    assert rollouts_to_target(np.array([0.1, np.mean([0.7, 0.7, 0.7])]), np.array([0.0, 5.0]), 0.7) == 5.0


def test_first_reaching_on_a_table_uses_step_order():
    curve = pd.DataFrame({"step": [3, 1, 2, 0], "eval_acc": [0.9, 0.65, 0.5, 0.1],
                          "cum_rollouts": [300, 100, 200, 0]})
    assert first_reaching(curve, 0.6) == 100


def test_gain_spread_by_hand():
    out = gain_spread(hand_table()).set_index(["strategy", "step"])
    # grpo gains 0.2, 0.2 (step 1), 0.4, 0.3 (step 2), 0.5, 0.5 (step 3); pc 0.4, 0.3 then equal
    assert out.index.tolist() == [("grpo", 1), ("grpo", 2), ("grpo", 3), ("pc", 1), ("pc", 2), ("pc", 3)]
    assert out["std"].tolist() == pytest.approx([0.0, np.sqrt(0.005), 0.0, np.sqrt(0.005), 0.0, 0.0], abs=1e-12)
    assert (out["seeds"] == 2).all() and out.loc[("pc", 2), "cum_rollouts"] == 3000
    # a run's own step 0 is its reference: shifting a whole run changes nothing
    shifted = hand_table()
    shifted.loc[shifted["seed"] == 1, "eval_acc"] += 0.05
    assert gain_spread(shifted)["std"].tolist() == pytest.approx(out["std"].tolist(), abs=1e-12)
