"""The real environment's per-group log adds up to its ledger for every strategy, and knows
each prompt's arithmetic level."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("math_verify")

import allocbench as ab  # noqa: E402
from allocbench.groups import GroupLog  # noqa: E402
from allocbench.schema import check_groups  # noqa: E402
from real import make_env  # noqa: E402


@pytest.mark.parametrize("name", ab.strategy_names())
def test_groups_add_up_to_the_ledger_in_real_runs(name, small_overrides):
    env = make_env("tiny-arith", seed=0, **{**small_overrides, "data.train_size": 256, "run.group_size": 8})
    log = GroupLog()
    try:
        table = ab.run(env, ab.make_strategy(name), ab.RunConfig(steps=2, seed=0, eval_every=2), groups=log)
    except ab.DataTooHard as e:
        table = e.table
    groups = log.table()
    check_groups(groups, table)  # generated rollouts and tokens sum to cum_rollouts / cum_tokens
    generated = groups[groups.kind != "reused"]
    assert generated.n.sum() == table.cum_rollouts.iloc[-1] > 0
    assert set(groups.prompt_difficulty.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0, 7.0}
