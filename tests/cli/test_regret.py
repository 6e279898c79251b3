import pandas as pd
import pytest

from allocbench.schema import write_table
from cli import main
from tests.analysis.test_regret import A, B, RULE
from tests.analysis.test_validate import build


@pytest.fixture
def folders(tmp_path):
    """A leaderboard folder (scenarios a and b, grpo and pilot_commit only) and a compare folder
    with the rule's runs of scenario a, run later."""
    board, later = tmp_path / "board", tmp_path / "later"
    for name, spec in (("a", A), ("b", B)):
        (board / name).mkdir(parents=True)
        rivals = {k: v for k, v in spec.items() if k != RULE}
        write_table(build(rivals, scenario=name), board / name / "runs.parquet")
    later.mkdir()
    write_table(build({RULE: A[RULE], "grpo": A["grpo"]}, scenario="a"), later / "runs.parquet")
    return board, later


def test_regret_reads_folders_as_scenarios_and_writes_two_files(folders, tmp_path, capsys):
    board, later = folders
    (tmp_path / "b-rule").mkdir()
    write_table(build({RULE: B[RULE]}, scenario="b"), tmp_path / "b-rule" / "runs.parquet")
    out = tmp_path / "out"
    code = main(["regret", str(board), str(later), str(tmp_path / "b-rule"), "--out", str(out), "--n-boot", "50"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = pd.read_csv(out / "regret.csv")
    assert table["scenario"].tolist() == ["a", "b"]
    assert table["ratio"].tolist() == pytest.approx([1.5, 1.0])
    assert "1 of 2 scenarios within 5%" in captured.out
    assert (out / "regret.md").read_text().startswith("| env | scenario |")
    assert main(["regret", str(board), str(later), "--out", str(out)]) == 2
    assert "would overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--strategy", "nope"], "unknown strategy 'nope'"),
    (["--rivals", "screen_on_plateau"], "--rivals must name at least one strategy other than --strategy"),
    (["--tolerance", "2"], "--tolerance must be in [0, 1)"),
])
def test_bad_options_get_one_line(folders, tmp_path, capsys, args, message):
    board, later = folders
    out = tmp_path / "out"
    assert main(["regret", str(board), str(later), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_scenario_without_the_rule_and_a_missing_folder_are_errors(folders, tmp_path, capsys):
    board, _ = folders
    assert main(["regret", str(board), "--out", str(tmp_path / "o")]) == 2
    assert "no runs of screen_on_plateau" in capsys.readouterr().err
    assert main(["regret", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such results folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_another_horizon_of_a_scenario_is_another_row(folders, tmp_path, capsys):
    board, later = folders
    longer = tmp_path / "longer"
    longer.mkdir()
    table = build({RULE: A[RULE], "grpo": A["grpo"], "pilot_commit": A["pilot_commit"]}, scenario="a")
    table = table.assign(step=table["step"] * 2)  # the same scenario, run to step 16
    write_table(table, longer / "runs.parquet")
    out = tmp_path / "out"
    assert main(["regret", str(board / "a"), str(later), str(longer), "--out", str(out), "--n-boot", "20"]) == 0
    rows = pd.read_csv(out / "regret.csv")
    assert rows[["scenario", "steps"]].values.tolist() == [["a", 8], ["a", 16]]
