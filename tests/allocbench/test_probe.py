import numpy as np
import pytest

from allocbench.errors import ConfigError
from allocbench.probe import probe
from sim import make_env


def test_probe_estimates_every_prompts_true_pass_rate():
    env = make_env("default", seed=0, pool_size=600, eval_size=100)
    table = probe(env, k=64, batch_prompts=128)
    assert table.prompt_id.tolist() == list(range(600)) and (table.k == 64).all()
    assert np.allclose(table.pass_rate, table.correct / 64)
    # k-sample estimates scatter around the truth by the binomial standard error
    err = table.pass_rate - table.prompt_pass_rate
    assert abs(err.mean()) < 0.01 and 0.02 < err.std() < 0.07
    assert np.corrcoef(table.pass_rate, table.prompt_pass_rate)[0, 1] > 0.95


def test_probe_spends_nothing_a_run_counts_and_refuses_k_zero():
    env = make_env("default", seed=0, pool_size=200, eval_size=50)
    before = env.evaluator.evaluate()["eval_acc"]
    probe(env, k=4)
    assert env.evaluator.evaluate()["eval_acc"] == before  # sampling trains nothing
    with pytest.raises(ConfigError, match="--k must be a positive integer"):
        probe(env, k=0)
