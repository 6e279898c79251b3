import subprocess
import sys

import pandas as pd
import pytest

from cli import main

SMALL = ["--seeds", "2", "--steps", "20", "--quiet"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_writes_table_figure_and_speedups(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, _ = run_cli(["compare", "--out", str(out), *SMALL], capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["accuracy_vs_rollouts.png", "runs.parquet", "speedup.csv"]
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs.strategy) == {"grpo", "dapo", "pilot_commit"} and set(runs.seed) == {0, 1}
    speedup = pd.read_csv(out / "speedup.csv")
    assert speedup.strategy.tolist() == ["grpo", "dapo", "pilot_commit"]
    assert speedup.loc[0, "speedup_vs_grpo"] == 1.0
    assert (out / "accuracy_vs_rollouts.png").read_bytes()[:4] == b"\x89PNG"
    assert "target accuracy" in stdout


def test_compare_refuses_to_overwrite_and_keeps_what_was_written(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "runs.parquet").write_bytes(b"precious")
    code, _, err = run_cli(["compare", "--out", str(out), *SMALL], capsys)
    assert code == 2 and "would overwrite" in err
    assert (out / "runs.parquet").read_bytes() == b"precious"


@pytest.mark.parametrize("args, message", [
    (["--strategies", "grpo,nope"], "unknown strategy 'nope'"),
    (["--scenario", "nope"], "unknown scenario 'nope'"),
    (["--set", "pilot_commit.pilot_fraction=1.5"], "pilot_commit.pilot_fraction must be in (0.0, 1.0)"),
    (["--set", "pilot_commit.pilot_fraction=0"], "pilot_commit.pilot_fraction must be in (0.0, 1.0)"),
    (["--budget", "0"], "budget must be a positive integer"),
    (["--set", "dapo.nope=1"], "dapo has no hyper-parameter nope"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--seeds", "3-x"], "--seeds takes N, a range A-B or a list a,b,c of seeds >= 0, got '3-x'"),
    (["--seeds", "4,4"], "--seeds takes N, a range A-B or a list a,b,c of distinct seeds >= 0, got '4,4'"),
    (["--seeds", "5-3"], "distinct seeds >= 0, got '5-3'"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--eval-every", "0"], "eval_every must be a positive integer"),
    (["--config", "/nonexistent/x.toml"], "config file not found: /nonexistent/x.toml"),
    (["--set", "pilot_commit"], "--set expects STRATEGY.PARAM=VALUE"),
    (["--target", "1.5"], "--target must be in (0, 1]"),
    (["--set", "speed.n_init=8", "--strategies", "grpo,speed", "--group-size", "8"],
     "speed.n_init (8) must be below the group size"),
])
def test_bad_input_one_error_line_nonzero_exit_no_files(tmp_path, capsys, args, message):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", "--out", str(out), *SMALL, *args], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("allocbench: error:") and message in err
    assert not out.exists()


def test_missing_output_parents_are_made(tmp_path, capsys):
    out = tmp_path / "no" / "such"
    code, _, err = run_cli(["compare", "--out", str(out), "--strategies", "grpo", *SMALL], capsys)
    assert code == 0, err
    assert (out / "runs.parquet").exists()


def test_output_under_a_file_is_an_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["compare", "--out", str(tmp_path / "file" / "cmp"), *SMALL], capsys)
    assert code == 2 and "is a file, not a folder" in err
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("text, message", [
    ("[strategies.pilot_comit]\npilot_fraction = 0.5\n", "unknown strategy 'pilot_comit'"),
    ("[strategy.pilot_commit]\npilot_fraction = 0.5\n", "unexpected top-level key 'strategy'"),
    ("[strategies.pilot_commit]\npilot_fraction = \n", "not valid TOML"),
    ("[strategies.pilot_commit]\npilot_fractoin = 0.5\n", "pilot_commit has no hyper-parameter pilot_fractoin"),
])
def test_a_config_file_mistake_is_refused_naming_the_file(tmp_path, capsys, text, message):
    config = tmp_path / "pc.toml"
    config.write_text(text)
    out = tmp_path / "cmp"
    code, _, err = run_cli(["compare", "--out", str(out), "--config", str(config), *SMALL], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    if "pilot_fractoin" not in text:
        assert str(config) in err
    assert not out.exists()


def test_config_file_sets_hyper_parameters(tmp_path, capsys):
    config = tmp_path / "pc.toml"
    config.write_text("[strategies.pilot_commit]\npilot_fraction = 0.5\n")
    out = tmp_path / "cmp"
    code, _, _ = run_cli(["compare", "--out", str(out), "--strategies", "grpo,pilot_commit",
                          "--config", str(config), *SMALL], capsys)
    assert code == 0
    runs = pd.read_parquet(out / "runs.parquet")
    pc = runs[runs.strategy == "pilot_commit"]
    assert (pc.hp_pilot_fraction == 0.5).all() and (pc.hp_pilot_n == 8).all() and (pc.hp_commit_n == 8).all()


def test_strategies_lists_the_registry_and_console_script_works():
    result = subprocess.run([sys.executable, "-m", "cli", "strategies"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in ["grpo", "dapo", "pilot_commit", "pilot_fraction: float = 0.25", "max_num_gen_batches: int = 10",
                 "reuse: bool = True", "tuned over [0.05, 0.6]"]:
        assert name in result.stdout
    assert "<class" not in result.stdout
    # the whole first paragraph of each docstring, not its first line
    assert "as the paper's verl recipe (databricks/pilot-commit, recipe/pc/) runs it." in " ".join(result.stdout.split())


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith("allocbench ")


def test_progress_to_a_log_file_is_a_few_lines(tmp_path):
    """Not a terminal: the bar may not write an update per step (thousands of lines)."""
    result = subprocess.run([sys.executable, "-m", "cli", "compare", "--out", str(tmp_path / "c"), "--seeds", "2",
                             "--steps", "200"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 1 <= result.stderr.count("step/s") <= 4


def test_one_seed_leaderboard_shows_no_spread(tmp_path, capsys):
    out = tmp_path / "board"
    code, _, err = run_cli(["leaderboard", "--out", str(out), "--scenarios", "default",
                            "--strategies", "grpo,pilot_commit", "--seeds", "1", "--steps", "20", "--quiet"], capsys)
    assert code == 0, err
    markdown = (out / "leaderboard.md").read_text()
    assert "±" not in markdown and "1/1" in markdown


def test_leaderboard_runs_every_scenario_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "board"
    code, _, err = run_cli(["leaderboard", "--out", str(out), "--scenarios", "default,easy",
                            "--strategies", "grpo,pilot_commit", *SMALL], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["default", "easy", "leaderboard.csv", "leaderboard.md"]
    board = pd.read_csv(out / "leaderboard.csv")
    assert board[["scenario", "strategy"]].values.tolist() == [
        ["default", "grpo"], ["default", "pilot_commit"], ["easy", "grpo"], ["easy", "pilot_commit"]]
    markdown = (out / "leaderboard.md").read_text()
    assert "### default" in markdown and "### easy" in markdown and "| pilot_commit |" in markdown
    code, _, err = run_cli(["leaderboard", "--out", str(out), "--scenarios", "default", *SMALL], capsys)
    assert code == 2 and "would overwrite" in err


def test_all_puts_the_paper_strategies_first():
    from cli import build_parser
    from cli.compare import parse_strategies

    args = build_parser().parse_args(["leaderboard", "--seeds", "1"])
    names = [s.name for s in parse_strategies(args, "all")]
    assert names[:3] == ["grpo", "dapo", "pilot_commit"] and len(names) == len(set(names)) >= 11


@pytest.mark.parametrize("text, seeds", [("3", [0, 1, 2]), ("5-7", [5, 6, 7]), ("2,9", [2, 9]), (" 4 ", [0, 1, 2, 3])])
def test_seeds_count_range_or_list(text, seeds):
    from cli.compare import parse_seeds

    assert parse_seeds(text) == seeds


def test_more_seeds_later_repeat_the_runs_of_one_command(tmp_path, capsys):
    """A board extended by --seeds A-B holds the same runs as one command over all seeds."""
    args = ["--strategies", "grpo,pilot_commit", "--steps", "20", "--quiet"]
    assert run_cli(["compare", "--out", str(tmp_path / "all"), "--seeds", "3", *args], capsys)[0] == 0
    assert run_cli(["compare", "--out", str(tmp_path / "late"), "--seeds", "1-2", *args], capsys)[0] == 0
    every, late = (pd.read_parquet(tmp_path / d / "runs.parquet").drop(columns="wall_s") for d in ("all", "late"))
    assert sorted(late["seed"].unique()) == [1, 2]
    pd.testing.assert_frame_equal(every[every["seed"] > 0].reset_index(drop=True), late.reset_index(drop=True))
