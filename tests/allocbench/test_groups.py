"""The per-group log: its rollouts and tokens add up to the ledger's, for every strategy; kinds,
rounds and the trained flag say what happened to each group; a resumed run logs the same."""

import pandas as pd
import pytest

import allocbench as ab
from allocbench.groups import GroupLog
from allocbench.schema import GROUP_COLUMNS, check_groups
from sim import make_env

SMALL = dict(pool_size=400, eval_size=100, train_batch=8, group_size=8)


def logged_run(name: str, steps: int = 12, **params):
    env = make_env("default", seed=0, **SMALL)
    log = GroupLog()
    try:
        table = ab.run(env, ab.make_strategy(name, **params), ab.RunConfig(steps=steps, seed=0, eval_every=4),
                       groups=log)
    except ab.DataTooHard as e:
        table = e.table
    return table, log.table()


@pytest.mark.parametrize("name", ab.strategy_names())
def test_generated_rows_add_up_to_the_ledger_for_every_strategy(name):
    table, groups = logged_run(name)
    generated = groups[groups.kind != "reused"]
    assert generated.n.sum() == table.cum_rollouts.iloc[-1]
    assert generated.tokens.sum() == table.cum_tokens.iloc[-1]
    # per step too, and the rounds are the ledger's
    per_step = generated.groupby("step").agg(n=("n", "sum"), rounds=("round", "max"))
    steps = table.set_index("step").loc[per_step.index]
    assert (per_step.n == steps.step_rollouts).all() and (per_step.rounds == steps.rounds).all()
    check_groups(groups, table)
    assert list(groups.columns[:len(GROUP_COLUMNS)]) == list(GROUP_COLUMNS)
    assert "prompt_pass_rate" in groups.columns and groups.prompt_pass_rate.between(0, 1).all()


def test_grpo_rows_are_main_groups_all_trained_in_their_own_step():
    table, groups = logged_run("grpo")
    assert set(groups.kind) == {"main"} and groups.trained.all()
    assert (groups.trained_step == groups.step).all() and (groups.n == 8).all()
    trained = groups.groupby("step").size()
    assert (trained == table.set_index("step").prompts_trained.loc[trained.index]).all()


def test_pilot_commit_pilots_then_commits_and_marks_the_pilot_trained_when_committed():
    table, groups = logged_run("pilot_commit", steps=20)
    pilots, commits = groups[groups.kind == "pilot"], groups[groups.kind == "commit"]
    assert (pilots.n == 2).all() and (commits.n == 6).all()  # n = 8, pilot_fraction 0.25
    # every commit follows a pilot of the same prompt, and a trained one went into the same
    # update as its pilot (commits dropped with a partial batch at an epoch's start are not)
    for c in commits.itertuples():
        own = pilots[(pilots.prompt_id == c.prompt_id) & (pilots.step <= c.step)]
        assert len(own)
        if c.trained:
            assert own.iloc[-1].trained_step == c.trained_step == c.step
    assert commits.trained.mean() > 0.9
    # pilots outside the keep band are never trained: the screening cost
    assert (~pilots.trained).sum() > 0
    assert groups.trained.sum() == 2 * table.prompts_trained.sum()


def test_dapo_filtered_groups_are_logged_untrained():
    table, groups = logged_run("dapo")
    assert (~groups.trained).sum() > 0
    trained = groups[groups.trained]
    assert ((trained.correct > 0) & (trained.correct < trained.n)).all()  # only std > 0 groups train


def test_reused_answers_are_logged_apart_and_cost_nothing():
    # a hard pool so that ar3po has all-wrong groups to patch with a cached answer
    env = make_env("hard", seed=0, **SMALL)
    log = GroupLog()
    table = ab.run(env, ab.make_strategy("ar3po"), ab.RunConfig(steps=60, seed=0, eval_every=20), groups=log)
    groups = log.table()
    reused = groups[groups.kind == "reused"]
    assert reused.n.sum() == table.reused_rollouts.sum() > 0
    assert (reused["round"] == 0).all() and reused.trained.all()
    check_groups(groups, table)


def test_a_resumed_run_logs_exactly_what_an_uninterrupted_one_does(tmp_path):
    def go(steps, folder):
        env = make_env("default", seed=1, **SMALL)
        log = GroupLog()
        ab.run(env, ab.make_strategy("pilot_commit"), ab.RunConfig(steps=steps, seed=1, eval_every=4),
               checkpoint=ab.Checkpoint(folder, every=3), groups=log)
        return log.table()

    whole = go(12, tmp_path / "a")
    go(6, tmp_path / "b")
    resumed = go(12, tmp_path / "b")
    pd.testing.assert_frame_equal(whole, resumed)


def test_check_groups_catches_a_log_that_does_not_add_up():
    table, groups = logged_run("grpo", steps=4)
    with pytest.raises(ValueError, match="do not add up"):
        check_groups(groups.iloc[1:], table)
    with pytest.raises(ValueError, match="unknown kinds"):
        check_groups(groups.assign(kind="other"))


def test_a_run_that_stops_mid_step_keeps_the_log_of_its_rows():
    # easy prompts: dapo's filter cannot fill a batch and stops at its round limit
    env = make_env("easy", seed=0, **SMALL)
    log = GroupLog()
    with pytest.raises(ab.DataTooHard) as stop:
        ab.run(env, ab.make_strategy("dapo", max_num_gen_batches=1), ab.RunConfig(steps=200, seed=0), groups=log)
    table = stop.value.table
    groups = log.table(through_step=int(table.step.max()))
    check_groups(groups, table)
    assert log.table().step.max() == table.step.max() + 1  # the failed step's rounds were logged
