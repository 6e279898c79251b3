import pandas as pd
import pytest

from allocbench.schema import write_table
from cli import main
from tests.analysis.test_validate import REAL, SIM, build


@pytest.fixture
def folders(tmp_path):
    """A compare folder (sim) and a leaderboard folder with one scenario subfolder (real)."""
    sim, real = tmp_path / "sim", tmp_path / "board"
    sim.mkdir()
    (real / "hand-real").mkdir(parents=True)
    write_table(build(SIM), sim / "runs.parquet")
    write_table(build(REAL, "real", "hand-real"), real / "hand-real" / "runs.parquet")
    (real / "leaderboard.csv").write_text("scenario\nhand-real\n")
    return sim, real


def test_validate_writes_three_files_and_prints_table(folders, tmp_path, capsys):
    sim, real = folders
    out = tmp_path / "deep" / "out"
    code = main(["validate", str(sim), str(real), "--out", str(out), "--n-boot", "50"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["agreement.csv", "paired.csv", "paired.png", "replicates.csv",
                                                     "replicates.png", "validate.csv", "validate.png"]
    table = pd.read_csv(out / "validate.csv")
    assert table["strategy"].tolist() == ["a", "c", "b", "grpo"]
    assert table.set_index("strategy")["real_speedup"].to_dict() == pytest.approx(
        {"a": 3.0, "b": 1.5, "c": 2.0, "grpo": 1.0})
    agree = pd.read_csv(out / "agreement.csv")
    assert len(agree) == 1 and agree.loc[0, "tau"] == pytest.approx(4 / 6)
    assert (agree.loc[0, "sim_scenario"], agree.loc[0, "real_scenario"]) == ("hand", "hand-real")
    assert agree.loc[0, "n_strategies"] == 4 and agree.loc[0, "n_boot"] == 50
    assert (out / "validate.png").read_bytes()[:4] == b"\x89PNG"
    assert "Kendall tau = 0.67 [0.67, 0.67] over 4 strategies" in captured.out
    assert "4.00x [4.00, 4.00]" in captured.out
    # the yardstick: 3 real seeds, all alike, split one a side: the real seeds agree fully, the
    # simulated ones as the full tables do
    replicates = pd.read_csv(out / "replicates.csv")
    assert replicates["seeds_per_side"].tolist() == [1] and replicates.loc[0, "splits"] == 200
    assert replicates.loc[0, "real_tau"] == pytest.approx(1.0) and replicates.loc[0, "sim_tau"] == pytest.approx(4 / 6)
    assert (out / "replicates.png").read_bytes()[:4] == b"\x89PNG"
    assert ("at 1 seed a side (200 random splits; mean, and the middle of the splits): real seeds against other "
            "real seeds tau = 1.00 [1.00, 1.00], simulated seeds against real seeds 0.67 [0.67, 0.67]") in captured.out
    assert "expected tau 1.00 against all 3 real seeds, tau >= 0.8 in 100% of boards" in captured.out
    # the paired differences at equal rollouts: every seed alike, so each is resolved
    differences = pd.read_csv(out / "paired.csv").set_index("strategy")
    assert differences["sim_diff"].to_dict() == pytest.approx({"a": 0.1, "b": 0.1, "c": 0.1})
    assert set(differences["real_verdict"]) == {"better"}
    assert "the real seeds resolve 3 of 3 (better: a, b, c; worse: none)" in captured.out
    assert (out / "paired.png").read_bytes()[:4] == b"\x89PNG"
    # a second run needs --force, which replaces the files
    code = main(["validate", str(sim), str(real), "--out", str(out), "--n-boot", "50"])
    assert code == 2 and "would overwrite" in capsys.readouterr().err
    code = main(["validate", str(sim), str(real), "--out", str(out), "--n-boot", "50", "--force",
                 "--sim-target", "0.7"])
    assert code == 0
    assert pd.read_csv(out / "agreement.csv").loc[0, "sim_target"] == 0.7
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_validate_picks_a_scenario_of_a_leaderboard(folders, tmp_path, capsys):
    sim, real = folders
    (real / "other").mkdir()
    write_table(build(SIM, "real", "other"), real / "other" / "runs.parquet")
    out = tmp_path / "out"
    code = main(["validate", str(sim), str(real), "--out", str(out), "--n-boot", "20"])
    err = capsys.readouterr().err
    assert code == 2 and "pick one with --real-scenario" in err and not out.exists()
    code = main(["validate", str(sim), str(real), "--out", str(out), "--n-boot", "20", "--real-scenario", "other"])
    assert code == 0
    agree = pd.read_csv(out / "agreement.csv")
    assert agree.loc[0, "real_scenario"] == "other" and agree.loc[0, "tau"] == pytest.approx(1.0)


@pytest.mark.parametrize("args, message", [
    (["SIM", "/tmp/allocbench-no-such-folder"], "real results: no such folder"),
    (["EMPTY", "REAL"], "sim results: EMPTY holds no runs.parquet"),
    (["SIM", "REAL", "--real-scenario", "nope"], "has no nope/runs.parquet"),
    (["SIM", "REAL", "--reference", "nope"], "reference strategy 'nope' is not in the sim table"),
    (["SIM", "ONLY_GRPO"], "1 strategy in both tables"),
    (["SIM", "REAL", "--sim-target", "1.5"], "--sim-target must be in (0, 1]"),
    (["SIM", "REAL", "--n-boot", "0"], "--n-boot must be at least 10"),
    (["SIM", "REAL", "--splits", "0"], "--splits must be a positive integer, got 0"),
])
def test_validate_bad_input_one_line_nothing_written(folders, tmp_path, capsys, args, message):
    sim, real = folders
    (tmp_path / "EMPTY").mkdir()
    only = tmp_path / "ONLY_GRPO"
    only.mkdir()
    write_table(build({"grpo": REAL["grpo"], "x": REAL["a"]}, "real"), only / "runs.parquet")
    names = {"SIM": str(sim), "REAL": str(real), "EMPTY": str(tmp_path / "EMPTY"), "ONLY_GRPO": str(only)}
    out = tmp_path / "out"
    code = main(["validate", *[names.get(a, a) for a in args], "--out", str(out)])
    err = capsys.readouterr().err.replace(str(tmp_path) + "/", "")
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("allocbench: error: ")
    assert not out.exists()


def test_real_results_split_over_folders_are_combined(folders, tmp_path, capsys):
    sim, real = folders
    whole = build(REAL, "real", "hand-real")
    first, later = tmp_path / "first", tmp_path / "later"
    for folder, names in ((first, ["grpo", "a"]), (later, ["grpo", "b", "c"])):  # grpo in both
        folder.mkdir()
        write_table(whole[whole.strategy.isin(names)], folder / "runs.parquet")
    out = tmp_path / "out"
    assert main(["validate", str(sim), str(first), "--more-real", str(later), "--out", str(out),
                 "--n-boot", "50"]) == 0
    assert pd.read_csv(out / "agreement.csv").loc[0, "tau"] == pytest.approx(4 / 6)  # as from one folder
    # a shared run that differs is not the same run: refused, nothing written
    changed = whole[whole.strategy.isin(["grpo", "b", "c"])].copy()
    changed.loc[changed.strategy == "grpo", "eval_acc"] += 0.01
    write_table(changed, later / "runs.parquet")
    capsys.readouterr()
    assert main(["validate", str(sim), str(first), "--more-real", str(later), "--out", str(tmp_path / "o2"),
                 "--n-boot", "50"]) == 2
    assert "disagree on runs they share (grpo seed" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_more_seeds_on_either_side_are_read_as_one_table(tmp_path, capsys):
    """Seeds 0-1 in one folder and 2 in another (each side) give what one folder of seeds
    0-2 gives."""
    from tests.analysis.test_validate import RISING

    tables = {"sim": build(RISING, seeds=(0, 1, 2)), "real": build(RISING, "real", seed_shift=0.02, seeds=(0, 1, 2))}
    for side, table in tables.items():
        for part, seeds in (("whole", [0, 1, 2]), ("first", [0, 1]), ("later", [2])):
            (tmp_path / side / part).mkdir(parents=True)
            write_table(table[table.seed.isin(seeds)], tmp_path / side / part / "runs.parquet")
    whole, split = tmp_path / "whole", tmp_path / "split"
    fixed = ["--real-target", "0.92", "--n-boot", "100"]  # a fixed target: redraws that miss it
    assert main(["validate", str(tmp_path / "sim/whole"), str(tmp_path / "real/whole"), "--out", str(whole),
                 *fixed]) == 0
    assert main(["validate", str(tmp_path / "sim/first"), str(tmp_path / "real/first"),
                 "--more-sim", str(tmp_path / "sim/later"), "--more-real", str(tmp_path / "real/later"),
                 "--out", str(split), *fixed]) == 0
    one, two = (pd.read_csv(d / "agreement.csv") for d in (whole, split))
    pd.testing.assert_frame_equal(one, two)
    assert one.loc[0, "low"] < 1.0  # the seeds differ on the real side: the interval is not a point


def test_two_strategies_in_common_give_the_paired_differences_only(tmp_path, capsys):
    """A tau over two strategies is +-1 whatever the runs: validate writes and prints the paired
    differences and no ranking."""
    sim, real = tmp_path / "sim", tmp_path / "real"
    for folder, rows, env in ((sim, SIM, "sim"), (real, REAL, "real")):
        folder.mkdir()
        table = build(rows, env, "hand")
        write_table(table[table["strategy"].isin(["grpo", "a"])], folder / "runs.parquet")
    out = tmp_path / "out"
    code = main(["validate", str(sim), str(real), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["paired.csv", "paired.png"]
    assert "no ranking to compare" in captured.out and "Kendall tau" not in captured.out
    assert "the real seeds resolve 1 of 1 (better: a; worse: none)" in captured.out
    assert pd.read_csv(out / "paired.csv")["strategy"].tolist() == ["a"]
