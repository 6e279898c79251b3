import dataclasses

import allocbench as ab


def test_a_hyper_parameter_name_means_one_type_in_every_strategy():
    # a results table has one hp_<name> column for every strategy of a comparison: the same name
    # with a bool in one strategy and an int in another cannot be written as one column
    types: dict[str, dict[str, str]] = {}
    for name in ab.strategy_names():
        for f in dataclasses.fields(ab.strategy_class(name)):
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            types.setdefault(f.name, {})[name] = kind.replace(" | None", "")
    clashes = {k: v for k, v in types.items() if len(set(v.values())) > 1}
    assert not clashes


def test_all_strategies_run_side_by_side_into_one_table(tmp_path):
    from allocbench.schema import read_table, write_table
    from sim import make_env

    tables = [ab.run(make_env("default", seed=0, train_batch=8, pool_size=800), ab.make_strategy(name),
                     ab.RunConfig(steps=2, seed=0)) for name in ab.strategy_names()]
    import pandas as pd

    write_table(pd.concat(tables, ignore_index=True), tmp_path / "runs.parquet")
    assert set(read_table(tmp_path / "runs.parquet")["strategy"]) == set(ab.strategy_names())
