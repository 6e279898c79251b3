"""The TRL plug-in (real/trl): strategies inside TRL's GRPOTrainer spend what their rules say,
TRL's loss trains the strategy's groups, the logs and tables carry the ledger's counts, bad
settings fail in one line, and nothing else in allocbench needs TRL."""

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

# transformers' deprecation notices about TRL's own gradient-checkpointing calls, not about this code
pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
REPO = Path(__file__).resolve().parents[2]
B, N = 4, 4  # prompts per step and rollouts per prompt of the test runs


def needs_trl():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("trl")


# ---------------------------------------------------------------- without TRL

BLOCK_TRL = """
import importlib, pkgutil, sys

class NoTRL:  # as if TRL were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "trl" or name.startswith("trl."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTRL())
for package in ("allocbench", "sim", "real", "analysis", "cli"):
    importlib.import_module(package)
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not info.name.startswith("real.trl") and not info.name.endswith(".__main__"):
            importlib.import_module(info.name)
import cli
try:
    cli.main(["--help"])
except SystemExit as e:
    assert e.code == 0, e.code
assert "trl" not in sys.modules
try:
    import real.trl
except ImportError as e:
    print("refused:", e)
"""


def test_nothing_in_allocbench_imports_trl_and_the_plugin_says_what_to_install():
    result = subprocess.run([sys.executable, "-c", BLOCK_TRL], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: allocbench" in result.stdout  # the CLI's --help ran
    assert "refused: real.trl needs TRL" in result.stdout and "pip install -e '.[trl]'" in result.stdout


# ---------------------------------------------------------------- the advantages

@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_are_trls_formula_on_groups_of_any_size(scale):
    needs_trl()
    import torch
    from trl.trainer.utils import nanstd

    from allocbench.protocols import Outcome
    from real.trl.trainer import group_advantages

    rng = np.random.default_rng(0)
    # equal groups: TRL's own computation (GRPOTrainer._generate_and_score_completions) is the reference
    rewards = rng.integers(0, 2, size=(6, 5)).astype(float)
    rewards[0] = 1.0  # one zero-variance group
    r = torch.tensor(rewards.ravel(), dtype=torch.float32)
    mean = r.view(-1, 5).mean(1).repeat_interleave(5)
    std = nanstd(r).expand_as(r) if scale == "batch" else nanstd(r.view(-1, 5), dim=1).repeat_interleave(5)
    expected = r - mean if scale == "none" else (r - mean) / (std + 1e-4)
    got, zero = group_advantages([Outcome(i, row, np.ones(5)) for i, row in enumerate(rewards)], scale)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(zero, torch.isclose(std, torch.zeros_like(std)).numpy())
    if scale != "group":
        return
    # groups of 2, 7 and 1 rollouts: each normalised over itself (a lone rollout's advantage is 0)
    groups = [Outcome(0, np.array([0.0, 1.0]), np.ones(2)), Outcome(1, np.array([1, 0, 0, 1, 1, 1, 0.0]), np.ones(7)),
              Outcome(2, np.array([1.0]), np.ones(1))]
    got, zero = group_advantages(groups, "group")
    np.testing.assert_allclose(got[:2], np.array([-0.5, 0.5]) / (np.std([0, 1], ddof=1) + 1e-4))
    seven = groups[1].rewards
    np.testing.assert_allclose(got[2:9], (seven - seven.mean()) / (seven.std(ddof=1) + 1e-4))
    assert got[9] == 0.0 and zero.tolist() == [False] * 9 + [True]


# ---------------------------------------------------------------- runs through TRL

@pytest.fixture(scope="module")
def tiny():
    """The tiny-arith policy (shipped weights) and a pool of distinct arithmetic prompts."""
    needs_trl()
    from real import presets as P
    from real.env import load_data
    from real.policy import load_policy
    from real.trl.tiny import prompt_dataset

    preset = P.get_preset("tiny-arith", **{"data.train_size": 400, "data.eval_size": 8})
    train, held_out, _ = load_data(preset)
    unique = list({p.question: p for p in train}.values())  # a prompt's rows are found by its token ids
    return load_policy(preset.model), prompt_dataset(unique), prompt_dataset(held_out)


def coin(share: float):
    """A reward independent of the barely trained model: a fixed coin per completion text, right with
    probability ``share``, so groups are mixed (or, for small shares, often all wrong)."""
    def coin_reward(completions, **_):
        return [float(zlib.crc32(c.encode()) % 1000 < 1000 * share) for c in completions]
    return coin_reward


def make_trainer(tiny, tmp_path, strategy="grpo", params=None, steps=3, reward=None, **kwargs):
    import copy

    from transformers import PrinterCallback
    from trl import GRPOConfig

    from real.trl import AllocGRPOTrainer

    policy, train, _ = tiny
    config = {**dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=B * N, num_generations=N,
                     max_completion_length=10, max_steps=steps, learning_rate=1e-4, beta=0.0, loss_type="dapo",
                     logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True,
                     gradient_checkpointing=False, seed=0), **kwargs.pop("config", {})}
    trainer = AllocGRPOTrainer(
        model=copy.deepcopy(policy.model), processing_class=policy.tokenizer, args=GRPOConfig(**config),
        reward_funcs=reward or coin(0.5), train_dataset=kwargs.pop("train_dataset", train),
        strategy=strategy, strategy_params=params, **kwargs)
    trainer.remove_callback(PrinterCallback)
    return trainer


class Capture:
    """What TRL's loss receives (every micro-batch) and what TRL logs."""

    def __init__(self, trainer):
        from transformers import TrainerCallback

        self.batches, self.logs = [], []
        compute = trainer._compute_loss

        def recording(model, inputs):
            self.batches.append({k: inputs[k].detach().clone() for k in ("prompt_ids", "prompt_mask", "advantages")})
            return compute(model, inputs)

        trainer._compute_loss = recording
        capture = self

        class Logs(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "allocbench/cum_rollouts" in logs:
                    capture.logs.append(dict(logs))

        trainer.add_callback(Logs())


def by_prompt(batch) -> dict[tuple, list[float]]:
    """The loss batch's advantages grouped by prompt (each prompt's token ids, padding removed)."""
    out: dict[tuple, list[float]] = {}
    for ids, mask, adv in zip(batch["prompt_ids"], batch["prompt_mask"], batch["advantages"]):
        out.setdefault(tuple(ids[mask.bool()].tolist()), []).append(float(adv))
    return out


def test_grpo_through_the_plugin_spends_exactly_B_times_n_per_step(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, "grpo")
    seen = Capture(trainer)
    trainer.train()
    table = trainer.table()
    assert table.step.tolist() == [0, 1, 2, 3]
    assert table.step_rollouts.tolist() == [0] + [B * N] * 3 and table.rounds.tolist() == [0, 1, 1, 1]
    assert table.pilot_rollouts.sum() == 0 and table.cum_rollouts.iloc[-1] == 3 * B * N
    assert trainer.allocation.ledger.total.rollouts == 3 * B * N
    assert [len(b["advantages"]) for b in seen.batches] == [B * N] * 3
    assert all(sorted(map(len, by_prompt(b).values())) == [N] * B for b in seen.batches)


@pytest.fixture(scope="module")
def pilot_commit_run(tiny, tmp_path_factory):
    # pilot 2 + commit 3: groups of 5, which TRL's own blocks of num_generations = 4 could not make
    trainer = make_trainer(tiny, tmp_path_factory.mktemp("pc"), "pilot_commit",
                           {"pilot_n": 2, "pilot_fraction": 0.4})
    seen = Capture(trainer)
    trainer.train()
    return trainer, seen


def test_pilot_commit_spends_what_its_rule_says_rejected_pilots_included(pilot_commit_run):
    trainer, _ = pilot_commit_run
    strategy = trainer.allocation.strategy
    assert (strategy.pilot_n, strategy.commit_n, strategy.gen_batch_size) == (2, 3, 3 * B)
    table = trainer.table().iloc[1:]
    groups = trainer.groups_log.table()
    for row in table.itertuples():
        mine = groups[groups.step == row.step]
        # every round pilots gen_batch_size fresh prompts, kept or not, with pilot_n rollouts each
        assert row.pilot_rollouts == row.rounds * 3 * B * 2 == mine[mine.kind == "pilot"].n.sum()
        assert (mine[mine.kind == "commit"].n == 3).all() and (mine.kind == "commit").sum() == B
        assert row.step_rollouts == row.pilot_rollouts + B * 3
    assert (table.pilot_rollouts > B * 2).all()  # more pilots were drawn than the groups trained keep


def test_trls_loss_receives_pilot_plus_commit_groups_normalised_over_themselves(pilot_commit_run):
    trainer, seen = pilot_commit_run
    assert [len(b["advantages"]) for b in seen.batches] == [B * 5] * 3
    for batch in seen.batches:
        groups = by_prompt(batch)
        assert sorted(map(len, groups.values())) == [5] * B
        for adv in groups.values():  # the keep band admits only pilots with a right and a wrong answer
            assert abs(np.mean(adv)) < 1e-5 and abs(np.std(adv, ddof=1) - 1) < 1e-3


def test_logged_counts_equal_the_ledgers(pilot_commit_run):
    trainer, seen = pilot_commit_run
    table = trainer.table().iloc[1:]
    assert len(seen.logs) == len(table) == 3  # logging_steps=1: one log per step
    for logs, row in zip(seen.logs, table.itertuples()):
        assert logs["allocbench/cum_rollouts"] == row.cum_rollouts
        assert logs["allocbench/cum_tokens"] == row.cum_tokens
        assert logs["allocbench/step_rollouts"] == row.step_rollouts
        assert logs["allocbench/step_pilot_rollouts"] == row.pilot_rollouts
        assert logs["allocbench/rounds"] == row.rounds
        assert logs["allocbench/trained_rollouts"] == row.trained_rollouts == B * 5
    total = trainer.allocation.ledger.total
    last = seen.logs[-1]
    assert (last["allocbench/cum_rollouts"], last["allocbench/cum_pilot_rollouts"], last["allocbench/cum_tokens"],
            last["allocbench/cum_rounds"]) == (total.rollouts, total.pilot_rollouts, total.tokens, total.rounds)
    assert total.pilot_rollouts == table.pilot_rollouts.sum()


def test_dapo_refills_until_B_groups_with_reward_variance(tiny, tmp_path):
    # a rare reward leaves about a third of the groups all wrong; one round of B prompts rarely fills B
    trainer = make_trainer(tiny, tmp_path, "dapo", {"gen_batch_size": B}, steps=4, reward=coin(0.25))
    seen = Capture(trainer)
    trainer.train()
    table = trainer.table().iloc[1:]
    assert (table.prompts_trained == B).all() and (table.zero_var_groups == 0).all()
    assert (table.step_rollouts == table.rounds * B * N).all()
    assert (table.rounds > 1).any()  # it did refill
    for batch in seen.batches:
        assert sorted(map(len, by_prompt(batch).values())) == [N] * B
        assert (batch["advantages"] != 0).all()  # no collapsed group reached the loss


def test_the_tables_are_allocbench_results_that_figures_reads(tiny, tmp_path):
    import pandas as pd

    import cli
    from allocbench.schema import check_groups, read_table

    scores = iter(range(100))
    trainer = make_trainer(tiny, tmp_path, "grpo", steps=5, evaluator=lambda: {"eval_acc": next(scores) / 100},
                           eval_every=2, results_dir=tmp_path / "results", scenario="tiny-test")
    trainer.train()
    table = read_table(tmp_path / "results" / "runs.parquet")  # the schema check included
    check_groups(pd.read_parquet(tmp_path / "results" / "groups.parquet"), table)
    assert (table.env == "trl").all() and (table.scenario == "tiny-test").all() and (table.strategy == "grpo").all()
    # evaluated before the first step, every eval_every steps and after the last
    assert table.eval_acc.notna().tolist() == [True, False, True, False, True, True]
    assert table.eval_acc.dropna().tolist() == [0.0, 0.01, 0.02, 0.03]
    assert cli.main(["figures", str(tmp_path / "results"), "--out", str(tmp_path / "figs"), "--boot", "100",
                     "--format", "png"]) == 0
    assert any(p.name.startswith("accuracy_vs_rollouts") for p in (tmp_path / "figs").iterdir())


def test_trls_own_evaluation_fills_eval_acc_without_an_evaluator(tiny, tmp_path):
    trainer = make_trainer(tiny, tmp_path, "grpo", steps=2, eval_dataset=tiny[2],
                           config=dict(eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=8))
    rewards = []
    evaluate = trainer.evaluate
    trainer.evaluate = lambda *a, **k: rewards.append(evaluate(*a, **k)["eval_reward"]) or {}
    trainer.train()
    table = trainer.table()
    assert len(rewards) == 2 and table.eval_acc.tolist()[1:] == pytest.approx(rewards)
    assert np.isnan(table.eval_acc.iloc[0])  # TRL did not evaluate before training


@pytest.mark.parametrize("change, message", [
    (dict(strategy="nope"), "unknown strategy 'nope'"),
    (dict(strategy="pilot_commit", params={"pilot_frac": 0.2}), "has no hyper-parameter pilot_frac"),
    (dict(strategy="dapo", params={"gen_batch_size": 0}), "dapo.gen_batch_size must be in"),
    (dict(eval_every=0), "eval_every must be a positive integer"),
    (dict(tools=[len]), "does not support tools"),
    (dict(config=dict(multi_objective_aggregation="normalize_then_sum")), "sum_then_normalize"),
])
def test_bad_settings_fail_in_one_line_before_training(tiny, tmp_path, change, message):
    from allocbench.errors import ConfigError

    change = dict(change)
    with pytest.raises(ConfigError, match=message) as e:
        make_trainer(tiny, tmp_path, change.pop("strategy", "grpo"), change.pop("params", None), **change)
    assert "\n" not in str(e.value)


def test_a_strategy_object_and_its_refusals(tiny, tmp_path):
    import datasets

    from allocbench import make_strategy
    from allocbench.errors import ConfigError

    with pytest.raises(ConfigError, match="strategy_params is for a strategy given by name"):
        make_trainer(tiny, tmp_path, make_strategy("dapo"), {"gen_batch_size": 8})
    stream = datasets.IterableDataset.from_generator(lambda: iter([{"prompt": "1+1="}]))
    with pytest.raises(ConfigError, match="map-style train_dataset"):
        make_trainer(tiny, tmp_path, train_dataset=stream)
    trainer = make_trainer(tiny, tmp_path, make_strategy("grpo"), steps=1)
    with pytest.raises(ConfigError, match="cannot resume from a checkpoint"):
        trainer.train(resume_from_checkpoint=True)
    trainer.train()
    with pytest.raises(ConfigError, match="would overwrite .*runs.parquet.*; pass overwrite_results=True"):
        make_trainer(tiny, tmp_path)
    make_trainer(tiny, tmp_path, overwrite_results=True)


def test_the_command_line_explains_itself_and_refuses_bad_input(tmp_path, capsys):
    needs_trl()
    from real.trl.tiny import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert "AllocGRPOTrainer" in help_text and "runs.parquet" in help_text
    assert main(["--strategies", "grpo,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown strategy 'nope'" in err
    assert main(["--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be positive" in capsys.readouterr().err


def test_the_command_line_keeps_a_run_that_could_not_fill_its_batch(tmp_path, capsys):
    needs_trl()
    import pandas as pd

    from real.trl.tiny import main

    # one round a step: the first round pilots but has nothing buffered to commit yet
    assert main(["--strategies", "pilot_commit", "--set", "pilot_commit.max_num_gen_batches=1", "--seeds", "1",
                 "--steps", "2", "--out", str(tmp_path)]) == 0
    assert "warning: pilot_commit seed 0: pilot_commit: 1 generation rounds filled only" in capsys.readouterr().err
    table = pd.read_parquet(tmp_path / "runs.parquet")
    assert table.step.tolist() == [0] and table.env.tolist() == ["trl"] and table.eval_acc.notna().all()


def trimmed_grpo():
    """grpo whose first group loses its last rollout: groups of unequal sizes, B x n - 1 rows."""
    from dataclasses import dataclass
    from typing import ClassVar

    from allocbench import Outcome, Strategy

    @dataclass
    class Trimmed(Strategy):
        name: ClassVar[str] = "trimmed"

        def collect(self, ctx):
            prompts = ctx.candidates.take(ctx.train_batch)
            groups = list(ctx.sampler.sample({int(i): ctx.group_size for i in prompts}).values())
            g = groups[0]
            return [Outcome(g.prompt_id, g.rewards[:-1], g.tokens[:-1], 0, g.rollout_ids[:-1])] + groups[1:]

    return Trimmed()


def test_groups_of_unequal_sizes_reach_the_loss_and_uneven_splits_are_refused(tiny, tmp_path):
    from allocbench.errors import ConfigError

    trainer = make_trainer(tiny, tmp_path, trimmed_grpo(), steps=1)
    seen = Capture(trainer)
    trainer.train()
    assert sorted(map(len, by_prompt(seen.batches[0]).values())) == [N - 1] + [N] * (B - 1)
    assert trainer.table().step_rollouts.iloc[-1] == B * N  # the dropped rollout was spent all the same
    # TRL cuts a generation batch into steps_per_generation equal parts: 15 rows do not cut in 2
    trainer = make_trainer(tiny, tmp_path / "split", trimmed_grpo(), steps=1,
                           config=dict(per_device_train_batch_size=B * N // 2, gradient_accumulation_steps=2))
    with pytest.raises(ConfigError, match="returned 15 rollouts to train on, not a multiple of steps_per_generation=2"):
        trainer.train()
