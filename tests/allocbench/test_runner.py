import numpy as np
import pandas as pd
import pytest

import allocbench as ab
from allocbench.schema import COLUMNS, check_table, read_table, write_table
from sim import make_env


@pytest.fixture(scope="module")
def pc_table():
    return ab.run(make_env("default", seed=3), ab.make_strategy("pilot_commit"),
                  ab.RunConfig(steps=30, seed=3, eval_every=5))


def test_rows_satisfy_the_schema(pc_table):
    check_table(pc_table)
    assert list(pc_table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert pc_table.step.tolist() == list(range(31))
    assert pc_table.eval_acc.notna().tolist() == [s % 5 == 0 for s in range(31)]
    assert {"hp_pilot_fraction", "hp_pilot_n", "hp_commit_n", "hp_gen_batch_size"} <= set(pc_table.columns)
    assert (pc_table.hp_pilot_n == 4).all() and (pc_table.hp_commit_n == 12).all()


def test_cumulative_counts_are_the_sum_of_step_counts(pc_table):
    assert (pc_table.step_rollouts.cumsum() == pc_table.cum_rollouts).all()
    assert (pc_table.pilot_rollouts <= pc_table.step_rollouts).all()
    assert pc_table.cum_tokens.is_monotonic_increasing


def test_same_seed_same_table_other_seed_other_table(pc_table):
    again = ab.run(make_env("default", seed=3), ab.make_strategy("pilot_commit"),
                   ab.RunConfig(steps=30, seed=3, eval_every=5))
    pd.testing.assert_frame_equal(pc_table.drop(columns="wall_s"), again.drop(columns="wall_s"))
    other = ab.run(make_env("default", seed=4), ab.make_strategy("pilot_commit"),
                   ab.RunConfig(steps=30, seed=4, eval_every=5))
    assert not np.allclose(other.eval_acc.dropna(), pc_table.eval_acc.dropna())


def test_budget_ends_the_run_without_overspending():
    table = ab.run(make_env("default", seed=0), ab.make_strategy("dapo"),
                   ab.RunConfig(steps=100, budget=20_000))
    assert table.cum_rollouts.iloc[-1] <= 20_000
    assert table.cum_rollouts.iloc[-1] + 3 * 64 * 16 > 20_000  # stopped only when the next round would not fit
    assert len(table) < 101


def test_on_step_sees_every_row_and_can_stop_the_run():
    seen = []

    def stop_at_five(row):
        seen.append(row["step"])
        if row["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ab.run(make_env("default"), ab.make_strategy("grpo"), ab.RunConfig(steps=20), on_step=stop_at_five)
    assert seen == [1, 2, 3, 4, 5]


def test_table_round_trips_through_parquet_and_csv(pc_table, tmp_path):
    for name in ["runs.parquet", "runs.csv"]:
        write_table(pc_table, tmp_path / name)
        back = read_table(tmp_path / name)
        assert back.shape == pc_table.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv", "runs.parquet"]  # no temp files left


def test_schema_check_rejects_broken_tables(pc_table):
    with pytest.raises(ValueError, match="lacks"):
        check_table(pc_table.drop(columns="cum_rollouts"))
    with pytest.raises(ValueError, match="more than one row"):
        check_table(pd.concat([pc_table, pc_table.iloc[[3]]]))
    shuffled = pc_table.copy()
    shuffled.loc[5, "cum_rollouts"] = 0
    with pytest.raises(ValueError, match="decreases"):
        check_table(shuffled)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(eval_every=0), dict(budget=0), dict(train_batch=-1)])
def test_bad_run_config_is_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.RunConfig(**bad)


@pytest.mark.parametrize("strategy", ["pilot_commit", "dapo"])
def test_a_killed_run_resumes_to_the_same_table(tmp_path, strategy):
    config = ab.RunConfig(steps=40, seed=2, eval_every=5)
    whole = ab.run(make_env("default", seed=2), ab.make_strategy(strategy), config)

    def kill_at_23(row):
        if row["step"] == 23:
            raise KeyboardInterrupt

    checkpoint = ab.Checkpoint(tmp_path / "ckpt", every=10)
    with pytest.raises(KeyboardInterrupt):
        ab.run(make_env("default", seed=2), ab.make_strategy(strategy), config,
               on_step=kill_at_23, checkpoint=checkpoint)
    assert checkpoint.latest().name == "step-000020"
    steps_after_resume = []
    resumed = ab.run(make_env("default", seed=2), ab.make_strategy(strategy), config,
                     on_step=lambda row: steps_after_resume.append(row["step"]), checkpoint=checkpoint)
    assert steps_after_resume == list(range(21, 41))  # steps 21-23 recomputed, none twice
    pd.testing.assert_frame_equal(whole.drop(columns="wall_s"), resumed.drop(columns="wall_s"))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["latest", "step-000040"]


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    checkpoint = ab.Checkpoint(tmp_path, every=5)
    ab.run(make_env("default"), ab.make_strategy("grpo"), ab.RunConfig(steps=5), checkpoint=checkpoint)
    with pytest.raises(ab.ConfigError, match="another run"):
        ab.run(make_env("default"), ab.make_strategy("pilot_commit"), ab.RunConfig(steps=5), checkpoint=checkpoint)


def test_per_benchmark_accuracies_are_kept():
    from tests.conftest import fixed_env

    class TwoBenchmarks:
        def evaluate(self):
            return {"eval_acc": 0.5, "eval_acc_math500": 0.4, "eval_acc_aime24": 0.6}

    env = fixed_env(np.full(40, 0.5))
    env.evaluator = TwoBenchmarks()
    table = ab.run(env, ab.make_strategy("grpo"), ab.RunConfig(steps=4, eval_every=2))
    check_table(table)
    assert table.eval_acc_math500.tolist()[::2] == [0.4, 0.4, 0.4]
    assert table.eval_acc_aime24.isna().tolist() == [False, True, False, True, False]


def test_a_strategy_sees_the_previous_update_report_read_only(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Recorder(ab.strategy_class("grpo")):
        def collect(self, ctx):
            seen.append((ctx.step, dict(ctx.last_update)))
            with pytest.raises(TypeError):
                ctx.last_update["noise_scale"] = 0.0  # read-only
            return super().collect(ctx)

    seen = []
    config = ab.RunConfig(steps=6, seed=1)
    table = ab.run(make_env("default", seed=1), Recorder(), config)
    assert seen[0] == (1, {})
    for step, report in seen[1:]:
        row = table[table.step == step - 1].iloc[0]
        assert report["noise_scale"] == row["learn_noise_scale"] and report["noise_scale"] > 0
        assert report["informative_samples"] == row["learn_informative_samples"]
        assert {"noise_trace", "noise_grad_sq", "zero_adv_share"} <= set(report)
    # a resumed run sees the report of the step before it stopped, restored from the table
    checkpoint = ab.Checkpoint(tmp_path / "ckpt", every=3)
    ab.run(make_env("default", seed=1), Recorder(), ab.RunConfig(steps=3, seed=1), checkpoint=checkpoint)
    seen.clear()
    ab.run(make_env("default", seed=1), Recorder(), config, checkpoint=checkpoint)
    assert seen[0][0] == 4 and seen[0][1]["noise_scale"] == table[table.step == 3].iloc[0]["learn_noise_scale"]
