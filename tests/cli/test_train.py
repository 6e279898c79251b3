import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("math_verify")

from cli import main  # noqa: E402
from allocbench.schema import read_table  # noqa: E402

SMALL = ["--env-set", "model.warmup_steps=30", "--env-set", "data.train_size=64", "--env-set", "data.eval_size=12",
         "--env-set", "run.train_batch=4", "--env-set", "run.group_size=4", "--quiet"]


def train(capsys, *args):
    code = main(["train", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_writes_table_preset_and_checkpoint_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = train(capsys, "--preset", "tiny-arith", "--strategy", "grpo", "--steps", "2", "--out", str(out),
                            "--checkpoint-every", "1", *SMALL)
    assert code == 0 and "eval_acc" in stdout
    table = read_table(out / "runs.parquet")
    assert table.step.tolist() == [0, 1, 2] and (table.env == "real").all()
    assert (out / "checkpoint" / "latest").exists() and (out / "preset.toml").exists()
    groups = pd.read_parquet(out / "groups.parquet")
    assert groups[groups.kind != "reused"].n.sum() == table.cum_rollouts.iloc[-1]

    code, _, err = train(capsys, "--preset", "tiny-arith", "--strategy", "grpo", "--steps", "2", "--out", str(out), *SMALL)
    assert code == 2 and "would overwrite" in err and "--resume" in err

    code, _, _ = train(capsys, "--preset", "tiny-arith", "--strategy", "grpo", "--steps", "3", "--out", str(out),
                       "--resume", *SMALL)
    resumed = read_table(out / "runs.parquet")
    assert code == 0 and resumed.step.tolist() == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(resumed.iloc[:3][["cum_rollouts", "cum_tokens", "eval_acc"]],
                                  table[["cum_rollouts", "cum_tokens", "eval_acc"]])

    # the written preset reproduces the run's configuration
    code, _, _ = train(capsys, "--preset", str(out / "preset.toml"), "--strategy", "grpo", "--steps", "1",
                       "--out", str(tmp_path / "again"), "--quiet")
    assert code == 0


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope", "--strategy", "grpo"], "unknown real preset"),
    (["--preset", "tiny-arith", "--strategy", "nope"], "unknown strategy"),
    (["--preset", "tiny-arith", "--strategy", "grpo", "--set", "grpo.x=1"], "no hyper-parameter"),
    (["--preset", "tiny-arith", "--strategy", "grpo", "--env-set", "learner.nope=1"], "has no field"),
    (["--preset", "tiny-arith", "--strategy", "grpo", "--resume", "--out", "/tmp/allocbench-no-such"], "nothing to resume"),
])
def test_bad_inputs_fail_before_any_model_is_built(capsys, args, message):
    code, _, err = train(capsys, *args)
    assert code == 2 and message in err


def test_list_presets(capsys):
    code, stdout, _ = train(capsys, "--list-presets")
    assert code == 0 and "tiny-arith" in stdout and "smollm2-arith" in stdout


def test_default_output_folder_is_made_on_a_fresh_clone(tmp_path, capsys, monkeypatch):
    """`allocbench train --preset P --strategy S` as the README shows it: ./runs/ does not exist yet."""
    monkeypatch.chdir(tmp_path)
    code, stdout, err = train(capsys, "--preset", "tiny-arith", "--strategy", "grpo", "--steps", "1", *SMALL)
    assert code == 0, err
    assert (tmp_path / "runs" / "tiny-arith-grpo-seed0" / "runs.parquet").exists()
