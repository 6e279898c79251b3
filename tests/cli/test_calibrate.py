"""``allocbench calibrate``: outputs, refusals, one-line errors, a resumable study."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cli import main
from cli import calibrate as cli_calibrate
from sim import calibrate as cal
from sim.scenarios import load_toml
from tests.sim.test_calibrate import make_runs

FAST = ["--allow-sim", "--params", "lr,noise_scale", "--seeds", "1", "--pool-size", "3000", "--quiet"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cal") / "runs"
    make_runs(folder, seeds=2, steps=30, train_batch=8, lr=0.01, noise_scale=800.0)
    return folder


def test_calibrate_writes_scenario_trials_and_figure_and_resumes(runs_dir, tmp_path, capsys):
    out = tmp_path / "fit" / "tiny.toml"
    code, stdout, _ = run_cli(["calibrate", str(runs_dir), "--out", str(out), "--trials", "3", *FAST], capsys)
    assert code == 0, stdout
    # (the SQLite file may keep its -wal / -shm companions while open)
    assert sorted(p.name for p in out.parent.iterdir() if ".db-" not in p.name) == [
        "calibrate-tiny.db", "tiny.fit.csv", "tiny.png", "tiny.toml"]
    sc = load_toml(out)
    assert sc.name == "tiny" and (sc.train_batch, sc.group_size, sc.steps, sc.pool_size) == (8, 8, 30, 3000)
    assert "fitted by allocbench calibrate to grpo" in sc.description
    text = out.read_text()
    assert text.startswith("# allocbench calibrate: study 'calibrate-tiny'") and "# discrepancy" in text
    trials = pd.read_csv(out.with_name("tiny.fit.csv"))
    assert trials["number"].tolist() == [0, 1, 2] and trials["first"].tolist() == [True, False, False]
    assert {"lr", "noise_scale", *cal.SUMMARIES, "start", "total"} <= set(trials.columns)
    assert "spread" not in trials.columns  # compared only when asked
    assert trials["total"].notna().all()
    best = trials.loc[trials["total"].idxmin()]
    assert sc.lr == pytest.approx(best["lr"]) and sc.noise_scale == pytest.approx(best["noise_scale"])
    assert out.with_name("tiny.png").read_bytes()[:4] == b"\x89PNG"
    assert "best of 3 trials" in stdout

    # a second run is refused without --force, and nothing is touched
    before = {p.name: p.read_bytes() for p in out.parent.iterdir() if ".db" not in p.name}
    code, _, err = run_cli(["calibrate", str(runs_dir), "--out", str(out), "--trials", "5", *FAST], capsys)
    assert code == 2 and "would overwrite" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.parent.iterdir() if ".db" not in p.name} == before

    # with --force the same study (same default storage) goes on: trials 3 and 4 are added
    code, _, _ = run_cli(["calibrate", str(runs_dir), "--out", str(out), "--trials", "5", "--force", *FAST], capsys)
    assert code == 0
    more = pd.read_csv(out.with_name("tiny.fit.csv"))
    assert more["number"].tolist() == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(more.iloc[:3][["lr", "noise_scale", "total"]], trials[["lr", "noise_scale", "total"]])

    # another fitting setup in the same study is refused
    code, _, err = run_cli(["calibrate", str(runs_dir), "--out", str(out), "--trials", "5", "--force",
                            *FAST[:-1], "--seeds", "2"], capsys)
    assert code == 2 and "was made with other settings" in err


def test_calibrate_with_a_storage_url_resumes_an_interrupted_study(runs_dir, tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    out = tmp_path / "x.toml"
    args = ["calibrate", str(runs_dir), "--out", str(out), "--trials", "3", "--storage", url, *FAST]
    real_evaluate, calls = cal.Setup.evaluate, []

    def interrupted_second(self, params, on_step=None, **kwargs):
        calls.append(params)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(self, params, on_step, **kwargs)

    monkeypatch.setattr(cal.Setup, "evaluate", interrupted_second)
    code, _, err = run_cli(args, capsys)
    assert code == 130 and "run the same command to resume" in err
    assert not out.exists() and not (tmp_path / "x.fit.csv").exists() and not (tmp_path / "x.png").exists()
    monkeypatch.setattr(cal.Setup, "evaluate", real_evaluate)
    code, _, _ = run_cli(args, capsys)
    assert code == 0
    trials = pd.read_csv(tmp_path / "x.fit.csv")
    assert trials["number"].tolist() == [0, 1, 2, 3]  # trial 1 was cut short, run again as 2
    assert trials["state"].tolist() == ["complete", "fail", "complete", "complete"]
    assert trials.loc[2, "lr"] == trials.loc[1, "lr"]
    assert not (tmp_path / "calibrate-x.db").exists()  # the given storage only


def runs_without(what: str):
    def make(folder, runs_dir):
        folder.mkdir()
        for name in ("runs.parquet", "groups.parquet"):
            if name != what:
                (folder / name).write_bytes((runs_dir / name).read_bytes())
    return make


@pytest.mark.parametrize("make, message", [
    (None, "runs folder not found"),
    (runs_without("runs.parquet"), "has no runs.parquet"),
    (runs_without("groups.parquet"), "has no groups.parquet"),
])
def test_missing_tables_one_error_line_exit_2_nothing_written(runs_dir, tmp_path, capsys, make, message):
    folder = tmp_path / "in"
    if make is not None:
        make(folder, runs_dir)
    out = tmp_path / "out" / "s.toml"
    code, stdout, err = run_cli(["calibrate", str(folder), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and message in err
    assert err.startswith("allocbench: error: ") and err.count("\n") == 1 and stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    ([], "not real; pass --allow-sim"),
    (["--allow-sim", "--fit-strategies", "pilot_commit"], "no rows of pilot_commit"),
    (["--allow-sim", "--fit-strategies", "nope"], "unknown strategy 'nope'"),
    (["--allow-sim", "--params", "lr,eval_size"], "--params: unknown eval_size"),
    (["--allow-sim", "--seeds", "0"], "--seeds must be positive"),
    (["--allow-sim", "--trials", "-1"], "--trials must be >= 0"),
    (["--allow-sim", "--base", "nope"], "unknown scenario 'nope'"),
    (["--allow-sim", "--probe", "/nonexistent"], "no probe.parquet there"),
    (["--allow-sim", "--start", "probe"], "--start probe needs --probe PROBE_DIR"),
    (["--allow-sim", "--study", "a b"], "--study must be letters"),
    (["--allow-sim", "--parts", "acc,nope"], "--parts: unknown nope"),
    (["--allow-sim", "--parts", "spread", "--seeds", "1"], "--parts spread compares the spread over seeds"),
])
def test_bad_input_one_error_line_exit_2_nothing_written(runs_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out" / "s.toml"
    code, stdout, err = run_cli(["calibrate", str(runs_dir), "--out", str(out), "--quiet", *args], capsys)
    assert code == 2 and message in err, err
    assert err.startswith("allocbench: error: ") and err.count("\n") == 1 and stdout == ""
    assert not (tmp_path / "out").exists()


def test_the_seed_spread_is_fitted_when_asked(runs_dir, tmp_path, capsys):
    out = tmp_path / "spread.toml"
    args = ["calibrate", str(runs_dir), "--out", str(out), "--trials", "2", *FAST[:-3], "--seeds", "2",
            "--pool-size", "3000", "--quiet", "--parts", "spread,acc"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0, stdout
    trials = pd.read_csv(out.with_name("spread.fit.csv"))
    assert {"acc", "spread", "start"} <= set(trials.columns) and "zero_var" not in trials.columns
    assert trials["spread"].notna().all() and trials["spread"].ge(0).all()
    # the total is the mean of the parts asked for (no start part: offset_std is not searched)
    assert np.allclose(trials["total"], trials[["acc", "spread"]].mean(axis=1))
    assert "(acc " in out.read_text() and "spread " in out.read_text()
    assert out.with_name("spread.png").read_bytes()[:4] == b"\x89PNG"
    # the same study with the default parts is another fitting setup
    code, _, err = run_cli(args[:-2] + ["--force"], capsys)
    assert code == 2 and "parts differ" in err


def test_out_must_be_a_toml_file(runs_dir, tmp_path, capsys):
    code, _, err = run_cli(["calibrate", str(runs_dir), "--out", str(tmp_path / "s.txt"), "--allow-sim"], capsys)
    assert code == 2 and "--out must name a .toml file" in err
    assert list(tmp_path.iterdir()) == []


def test_help_and_the_searched_fields(capsys):
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "RUNS_DIR" in text and "--probe" in text and "--storage" in text and "--allow-sim" in text
    assert cli_calibrate._space() == cal.DEFAULT_PARAMS


@pytest.fixture(scope="module")
def regimes(tmp_path_factory):
    """The runs of one world in two regimes: 8 prompts per step at lr 0.01, 4 at lr 0.02."""
    root = tmp_path_factory.mktemp("regimes")
    make_runs(root / "wide", seeds=2, steps=30, train_batch=8, lr=0.01, noise_scale=800.0, name="wide")
    make_runs(root / "narrow", seeds=2, steps=40, train_batch=4, lr=0.02, noise_scale=800.0, name="narrow")
    return root / "wide", root / "narrow"


def test_calibrate_on_two_regimes_writes_one_scenario_and_a_figure_per_regime(regimes, tmp_path, capsys):
    wide, narrow = regimes
    out = tmp_path / "fit" / "joint.toml"
    code, stdout, _ = run_cli(["calibrate", str(wide), str(narrow), "--lrs", "1e-4,2e-4", "--out", str(out),
                               "--trials", "2", *FAST], capsys)
    assert code == 0, stdout
    assert sorted(p.name for p in out.parent.iterdir() if ".db-" not in p.name) == [
        "calibrate-joint.db", "joint.fit.csv", "joint.png", "joint.toml", "joint@narrow.png"]
    assert out.with_name("joint@narrow.png").read_bytes()[:4] == b"\x89PNG"
    sc = load_toml(out)
    assert (sc.train_batch, sc.steps) == (8, 30) and "and narrow (lr x 2)" in sc.description
    trials = pd.read_csv(out.with_name("joint.fit.csv"))
    assert trials[["total@wide", "total@narrow"]].notna().all().all()
    assert trials["total"].tolist() == pytest.approx(trials[["total@wide", "total@narrow"]].mean(axis=1).tolist())
    also = [line for line in out.read_text().splitlines() if line.startswith("# also fitted to the runs in")]
    assert len(also) == 1 and "(narrow; 2 seeds, 40 steps, B = 4, n = 8, eval every 10, lr x 2)" in also[0]
    # the command the header gives moves the scenario to the narrow regime
    command = also[0].split("this scenario in that regime: allocbench ")[1].split()
    code, moved, _ = run_cli(command, capsys)
    assert code == 0
    path = tmp_path / "moved.toml"
    path.write_text(moved)
    there = load_toml(path)
    assert (there.train_batch, there.steps, there.lr) == (4, 40, pytest.approx(2 * sc.lr))


@pytest.mark.parametrize("which, args, message", [
    ("both", [], "2 RUNS_DIR need --lrs"),
    ("both", ["--lrs", "1e-4"], "--lrs gives 1 learning rates for 2 RUNS_DIR"),
    ("both", ["--lrs", "1e-4,x"], "--lrs must be comma-separated numbers"),
    ("both", ["--lrs", "1e-4,-1e-4"], "--lrs must be positive"),
    ("wide", ["--lrs", "1e-4"], "--lrs is for several RUNS_DIR"),
    ("twice", ["--lrs", "1e-4,1e-4"], "two folders hold runs of wide: pass one folder per regime"),
])
def test_bad_regimes_one_error_line_exit_2_nothing_written(regimes, tmp_path, capsys, which, args, message):
    wide, narrow = regimes
    folders = {"both": [wide, narrow], "wide": [wide], "twice": [wide, wide]}[which]
    out = tmp_path / "out" / "s.toml"
    code, stdout, err = run_cli(["calibrate", *map(str, folders), "--out", str(out), *args, *FAST], capsys)
    assert code == 2 and message in err, err
    assert err.startswith("allocbench: error: ") and err.count("\n") == 1 and stdout == ""
    assert not (tmp_path / "out").exists()


def recording_lr(folder, lr, dest):
    """A copy of the runs in ``folder`` whose rows record the learner's lr as the real runs do:
    NaN at step 0 (no update), a warm-up to ``lr`` over the first two steps, then ``lr``."""
    shutil.copytree(folder, dest)
    runs = pd.read_parquet(dest / "runs.parquet")
    runs["learn_lr"] = np.where(runs["step"] == 0, np.nan, lr * np.minimum(1.0, runs["step"] / 2))
    runs.to_parquet(dest / "runs.parquet", index=False)
    return dest


def test_several_regimes_take_the_learning_rates_their_runs_record(regimes, tmp_path, capsys):
    wide, narrow = (recording_lr(f, lr, tmp_path / f.name) for f, lr in zip(regimes, (1e-4, 2e-4)))
    out = tmp_path / "fit" / "joint.toml"
    code, stdout, err = run_cli(["calibrate", str(wide), str(narrow), "--out", str(out), "--trials", "1", *FAST],
                                capsys)
    assert code == 0, err
    assert "and narrow (lr x 2)" in load_toml(out).description
    # --lrs that agree with the recorded rates are taken; ones that do not are refused
    code, _, err = run_cli(["calibrate", str(wide), str(narrow), "--lrs", "1e-4,2e-4", "--out", str(out),
                            "--trials", "1", "--force", *FAST], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["calibrate", str(wide), str(narrow), "--lrs", "1e-4,3e-4", "--out",
                                 str(tmp_path / "other" / "s.toml"), *FAST], capsys)
    assert code == 2 and err.count("\n") == 1 and stdout == ""
    assert f"--lrs gives 0.0003 for {narrow}, but its runs record a learning rate of 0.0002" in err
    assert not (tmp_path / "other").exists()


def test_a_regime_whose_runs_record_no_learning_rate_needs_lrs(regimes, tmp_path, capsys):
    wide = recording_lr(regimes[0], 1e-4, tmp_path / "wide")
    out = tmp_path / "out" / "s.toml"
    code, stdout, err = run_cli(["calibrate", str(wide), str(regimes[1]), "--out", str(out), *FAST], capsys)
    assert code == 2 and err.count("\n") == 1 and stdout == ""
    # the message names the folder without the rates, only that one
    assert "2 RUNS_DIR need --lrs" in err and f"the runs in {regimes[1]} do not record it" in err
    assert not (tmp_path / "out").exists()


def test_restarts_run_one_study_per_sampler_seed_and_keep_the_best_on_fresh_seeds(runs_dir, tmp_path, capsys):
    out = tmp_path / "r.toml"
    args = ["calibrate", str(runs_dir), "--out", str(out), "--trials", "2", "--restarts", "2", "--sampler-seed", "5",
            *FAST]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0, stdout
    assert sorted(p.name for p in tmp_path.iterdir() if ".db-" not in p.name) == [
        "calibrate-r-s5.db", "calibrate-r-s6.db", "r.fit.csv", "r.png", "r.restarts.csv", "r.toml"]
    restarts = pd.read_csv(tmp_path / "r.restarts.csv")
    assert restarts["study"].tolist() == ["calibrate-r-s5", "calibrate-r-s6"] and restarts["finished"].tolist() == [2, 2]
    kept = restarts.loc[restarts["fresh_total"].idxmin()]
    assert restarts["chosen"].sum() == 1 and kept["chosen"]
    sc = load_toml(out)
    assert sc.lr == pytest.approx(kept["lr"]) and sc.noise_scale == pytest.approx(kept["noise_scale"])
    text = out.read_text()
    assert f"study '{kept['study']}'" in text.splitlines()[0] and "# kept of 2 restarts" in text
    trials = pd.read_csv(tmp_path / "r.fit.csv")
    assert trials.groupby("study")["number"].apply(list).to_dict() == {n: [0, 1] for n in restarts["study"]}
    # each study is the one a single run at its sampler seed makes: the same trials
    code, _, _ = run_cli(["calibrate", str(runs_dir), "--out", str(tmp_path / "one" / "r.toml"), "--trials", "2",
                          "--sampler-seed", "6", "--study", "calibrate-r-s6", *FAST], capsys)
    assert code == 0
    single = pd.read_csv(tmp_path / "one" / "r.fit.csv")
    pd.testing.assert_frame_equal(single[["lr", "noise_scale", "total"]],
                                  trials.loc[trials["study"] == "calibrate-r-s6", ["lr", "noise_scale", "total"]]
                                  .reset_index(drop=True))
    # resumed with --force: no new trial, the same choice and files
    before = {p: (tmp_path / p).read_bytes() for p in ("r.restarts.csv", "r.toml")}
    code, _, _ = run_cli(args + ["--force"], capsys)
    assert code == 0 and {p: (tmp_path / p).read_bytes() for p in before} == before


def test_restarts_must_be_at_least_one(runs_dir, tmp_path, capsys):
    code, stdout, err = run_cli(["calibrate", str(runs_dir), "--out", str(tmp_path / "o" / "s.toml"), "--restarts",
                                 "0", *FAST], capsys)
    assert code == 2 and "--restarts must be >= 1, got 0" in err and err.count("\n") == 1 and stdout == ""
    assert not (tmp_path / "o").exists()
