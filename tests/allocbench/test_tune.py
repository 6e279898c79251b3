"""allocbench tune: a study improves on a bad start, resumes after an interrupt or a crash,
shares one storage between worker processes (SQLite, PostgreSQL, workers opening a new study at
the same moment), writes its outputs and refreshes them when the same command adds trials."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from allocbench import tune  # noqa: E402
from allocbench.config import strategy_params  # noqa: E402
from allocbench.errors import ConfigError  # noqa: E402
from allocbench.strategy import make_strategy, strategy_class, strategy_names  # noqa: E402
from cli import main  # noqa: E402

# a tiny scenario: a run takes ~20 ms, a trial of 2 seeds well under a second
TINY = (("pool_size", 800), ("eval_size", 200), ("train_batch", 8), ("group_size", 8), ("lr", 0.05))
CONFIG = tune.TuneConfig("pilot_commit", seeds=2, steps=30, eval_every=5, overrides=TINY)
TINY_ARGS = ["--strategy", "pilot_commit", "--seeds", "2", "--steps", "30", "--eval-every", "5",
             *[a for k, v in TINY for a in ("--scenario-set", f"{k}={v}")]]
REPO = Path(__file__).resolve().parents[2]


def sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


def tune_cmd(storage: str, study: str, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli", "tune", *TINY_ARGS, "--storage", storage,
            "--study", study, "--trials", str(trials), "--quiet", *extra]


def popen(cmd: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load(storage: str, study: str):
    return optuna.load_study(study_name=study, storage=tune.open_storage(storage))


def finished(study) -> dict[int, float | None]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return {t.number: t.value for t in study.get_trials(states=states)}


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_study_improves_on_a_bad_start(tmp_path):
    storage = sqlite(tmp_path / "s.db")
    study = tune.open_study(CONFIG, storage, "s", sampler_seed=0)
    assert study.user_attrs["settings"]["steps"] == 30
    target = study.user_attrs["reference"]["target"]
    assert 0 < target < 1
    # tiny pilots with huge commits: noisy screening, rollouts spent on the wrong prompts
    study.enqueue_trial({"pilot_fraction": 0.05, "pilot_n": 2, "lower": 0.0, "upper": 0.0})
    tune.optimize(study, CONFIG, 12)
    trials = study.get_trials()
    assert trials[0].user_attrs["defaults"] and trials[0].params["pilot_fraction"] == 0.25
    bad = trials[1]
    assert bad.params["pilot_fraction"] == 0.05 and bad.state.name == "COMPLETE"
    assert study.best_value < 0.8 * bad.value
    assert study.best_trial.number != 1
    assert sum(tune.counts(study).values()) == 12
    # a resumed study keeps its target and refuses other settings
    again = tune.open_study(CONFIG, storage, "s")
    assert again.user_attrs["reference"]["target"] == target
    with pytest.raises(ConfigError, match="seeds=2"):
        tune.open_study(tune.TuneConfig("pilot_commit", seeds=3, steps=30, eval_every=5, overrides=TINY),
                        storage, "s")
    with pytest.raises(ConfigError, match="target"):
        tune.open_study(tune.TuneConfig("pilot_commit", seeds=2, steps=30, eval_every=5, overrides=TINY,
                                        target=0.99), storage, "s")


def test_cli_writes_outputs_and_refreshes_them_for_the_same_study(tmp_path, capsys):
    storage = sqlite(tmp_path / "c.db")
    out = tmp_path / "out"
    args = ["tune", *TINY_ARGS, "--storage", storage, "--study", "c", "--trials", "8", "--out", str(out),
            "--sampler-seed", "1", "--quiet", "--eval-scenarios", "hard"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "study c: " in printed and "complete" in printed and "pruned" in printed and "failed" in printed
    best = tomllib.loads((out / "best.toml").read_text())
    params = strategy_params(["pilot_commit"], out / "best.toml", [])["pilot_commit"]
    assert params == best["strategies"]["pilot_commit"] and "pilot_fraction" in params
    make_strategy("pilot_commit", **params)  # usable by `allocbench compare --config`
    assert tune.outputs_owner(out) == ("c", storage)
    trials = (out / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 8
    for name in ["optimization_history.png", "param_importances.png", "contour_pilot_fraction_pilot_n.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    robustness = (out / "robustness.csv").read_text().splitlines()
    assert robustness[0].startswith("scenario,role,") and "gain_gap" in robustness[0]
    assert [r.split(",")[:2] for r in robustness[1:]] == [["default", "tuning"], ["hard", "held-out"]]

    # the same command with more trials continues the study and refreshes its outputs, no --force
    more = [a if a != "8" else "11" for a in args]
    assert main(more) == 0
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 11
    assert "best of 11 finished trials" in (out / "best.toml").read_text().splitlines()[0]
    # without --eval-scenarios the earlier robustness table (of an earlier best) goes
    assert main(more[:-2]) == 0
    assert "removed the earlier robustness.csv" in capsys.readouterr().out
    assert not (out / "robustness.csv").exists()

    # another study's outputs are not replaced without --force ...
    before = (out / "best.toml").read_bytes()
    other = ["tune", *TINY_ARGS, "--storage", storage, "--study", "c2", "--trials", "6", "--out", str(out),
             "--sampler-seed", "1", "--quiet"]
    assert main(other) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would overwrite" in err[0] and "study 'c'" in err[0], err
    assert (out / "best.toml").read_bytes() == before
    # ... nor files of unknown origin (no best.toml naming a study)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "trials.csv").write_text("number,value\n")
    assert main([*other[:-3], "--out", str(stray), "--quiet"]) == 2
    assert "would overwrite" in capsys.readouterr().err
    # the same study name in another storage is another study
    assert main([a if a != storage else sqlite(tmp_path / "d.db") for a in args]) == 2
    assert "would overwrite" in capsys.readouterr().err
    # --force replaces them; the folder then holds c2's outputs
    assert main([*other, "--force"]) == 0
    assert tune.outputs_owner(out) == ("c2", storage)


def test_out_folder_holds_the_default_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["tune", *TINY_ARGS, "--study", "o", "--trials", "3", "--quiet"]
    assert main([*args, "--out", "mine"]) == 0
    assert (tmp_path / "mine" / "o.db").is_file() and (tmp_path / "mine" / "best.toml").is_file()
    assert not (tmp_path / "results").exists()
    assert tune.outputs_owner(tmp_path / "mine") == ("o", sqlite(tmp_path / "mine" / "o.db"))
    assert main([*args, "--out", "mine", "--trials", "4"]) == 0  # resumes from mine/o.db
    assert len(load(sqlite(tmp_path / "mine" / "o.db"), "o").get_trials()) == 4
    # an --out that cannot be a folder is refused before anything is created
    (tmp_path / "file").write_text("")
    assert main([*args, "--out", "file/sub"]) == 2
    assert not (tmp_path / "file" / "sub" / "o.db").exists()
    # without --out: results/tune/STUDY.db and results/tune/STUDY/
    assert main(args) == 0
    assert (tmp_path / "results" / "tune" / "o.db").is_file()
    assert (tmp_path / "results" / "tune" / "o" / "best.toml").is_file()


def test_contour_pair_comes_from_the_strategy_declaration(monkeypatch):
    assert tune.contour_params("pilot_commit") == ("pilot_fraction", "pilot_n")
    assert "contour_pilot_fraction_pilot_n.png" in tune.output_names(CONFIG, False)
    cls = strategy_class("pilot_commit")
    monkeypatch.setattr(cls, "contour", ("upper", "lower"))
    assert tune.figure_names("pilot_commit")["contour"] == "contour_upper_lower.png"
    assert "contour_upper_lower.png" in tune.output_names(CONFIG, False)
    for bad in [("upper",), ("upper", "upper"), ("upper", "gen_batch_size")]:  # gen_batch_size: not searched
        monkeypatch.setattr(cls, "contour", bad)
        with pytest.raises(ConfigError, match="contour"):
            tune.contour_params("pilot_commit")
    # no declaration: the first two searched fields; fewer than two: no contour
    for name in strategy_names():
        if strategy_class(name).contour:
            continue
        space = tune.searched_fields(name)
        assert tune.contour_params(name) == (tuple(space[:2]) if len(space) >= 2 else None), name
        assert ("contour" in tune.figure_names(name)) == (len(space) >= 2)


@pytest.mark.parametrize("url", ["postgresql://tuner:s3cret@127.0.0.1:1/nodb",
                                 "sqlite:////nonexistent-dir/x/study.db", "nosuchdb://x"])
def test_unreachable_storage_is_one_line_and_exit_2(tmp_path, capsys, url):
    rc = main(["tune", *TINY_ARGS, "--storage", url, "--study", "u", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("allocbench: error: cannot open study storage"), err
    assert "s3cret" not in err[0]


def test_resume_after_interrupt_and_crash_keeps_finished_trials(tmp_path):
    storage = sqlite(tmp_path / "r.db")
    # Ctrl-C: the running trial is failed and re-run with the same parameters on resume
    proc = popen(tune_cmd(storage, "r", 200, "--worker"), tmp_path)
    wait_for(lambda: (tmp_path / "r.db").exists() and _n_finished(storage, "r") >= 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run the same command to resume" in err
    # a crash: SIGKILL in the middle of the resumed study
    proc = popen(tune_cmd(storage, "r", 200, "--worker"), tmp_path)
    wait_for(lambda: _n_finished(storage, "r") >= 6)
    proc.kill()
    proc.wait(timeout=10)
    kept = finished(load(storage, "r"))
    assert len(kept) >= 6
    interrupted = [t for t in load(storage, "r").get_trials() if t.user_attrs.get("interrupted")]
    # resume to len(kept) + 3 finished trials: nothing finished before is lost or changed
    proc = popen(tune_cmd(storage, "r", len(kept) + 3, "--worker"), tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    study = load(storage, "r")
    now = finished(study)
    assert len(now) >= len(kept) + 3
    assert all(now[n] == v for n, v in kept.items())
    retries = {t.user_attrs.get("retry_of"): t for t in study.get_trials()}
    for t in interrupted:  # the Ctrl-C'd trial ran again with the parameters it had drawn
        assert t.number in retries and t.params.items() <= retries[t.number].params.items()


def _n_finished(storage: str, study: str) -> int:
    try:
        return len(finished(load(storage, study)))
    except Exception:  # not created yet
        return 0


def _check_shared(storage: str, study: str, procs: list[subprocess.Popen], trials: int, workers: int) -> None:
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    s = load(storage, study)
    all_trials = s.get_trials()
    assert [t.number for t in all_trials] == list(range(len(all_trials)))  # none lost, none doubled
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in all_trials), [t.state for t in all_trials]
    assert trials <= len(all_trials) <= trials + workers  # a worker stops once the study has enough
    # every worker may take part; under load a late starter can find the study already full,
    # so require real sharing (two or more) rather than every worker
    assert 2 <= len({t.user_attrs["worker"] for t in all_trials}) <= workers
    assert all(t.intermediate_values for t in all_trials)


def test_two_workers_share_one_sqlite_study(tmp_path):
    storage = sqlite(tmp_path / "w.db")
    # started together: both create-or-load the study; each stops when the study holds 24
    procs = [popen(tune_cmd(storage, "w", 24, "--worker"), tmp_path) for _ in range(2)]
    _check_shared(storage, "w", procs, 24, 2)


def test_four_workers_open_a_new_sqlite_study_at_once(tmp_path):
    storage = sqlite(tmp_path / "f.db")
    procs = [popen(tune_cmd(storage, "f", 6, "--worker"), tmp_path) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    s = load(storage, "f")
    assert s.user_attrs["settings"]["steps"] == 30
    all_trials = s.get_trials()
    assert [t.number for t in all_trials] == list(range(len(all_trials)))
    assert len(all_trials) >= 6 and all(t.state.name in ("COMPLETE", "PRUNED") for t in all_trials)


@pytest.mark.parametrize("after", range(4))
def test_open_study_while_another_worker_creates_it(tmp_path, monkeypatch, after):
    """Worker B opens a new study while worker A makes it: A's whole creation (settings, then
    its default trial) lands right after B's read number ``after`` of the study's trials or
    attributes. Whatever the interleaving, B loads the study A made (or makes the same one)."""
    storage = sqlite(tmp_path / "race.db")
    Study = optuna.study.Study
    real_get_trials, real_attrs = Study.get_trials, Study.user_attrs
    reads, inside_a = [0], [False]

    def read_done():
        if inside_a[0]:
            return
        reads[0] += 1
        if reads[0] - 1 == after:  # worker A runs now, between two reads of B
            inside_a[0] = True
            try:
                tune.open_study(CONFIG, storage, "race")
            finally:
                inside_a[0] = False

    def get_trials(self, *args, **kwargs):
        trials = real_get_trials(self, *args, **kwargs)
        read_done()
        return trials

    def user_attrs(self):
        attrs = real_attrs.fget(self)
        read_done()
        return attrs

    monkeypatch.setattr(Study, "get_trials", get_trials)
    monkeypatch.setattr(Study, "user_attrs", property(user_attrs))
    study = tune.open_study(CONFIG, storage, "race")  # worker B
    monkeypatch.undo()
    assert reads[0] > after  # A did run in the middle of B
    assert study.user_attrs["settings"]["steps"] == 30
    assert [t.user_attrs.get("defaults") for t in study.get_trials()][:1] == [True]
    tune.open_study(CONFIG, storage, "race")  # and the study is a complete one


def test_a_study_with_trials_but_no_settings_is_refused(tmp_path, monkeypatch):
    storage = sqlite(tmp_path / "x.db")
    other = optuna.create_study(storage=tune.open_storage(storage), study_name="x")
    other.enqueue_trial({"a": 1})
    monkeypatch.setattr("allocbench.tune.study.SETTLE_S", 0.5)
    with pytest.raises(ConfigError, match="not made by allocbench tune"):
        tune.open_study(CONFIG, storage, "x")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a free loopback port; its URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install -y postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 not installed; pip install psycopg2-binary")
    import psycopg2

    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="allocbench-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "30", "start",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            conn.autocommit = True
            conn.cursor().execute("CREATE DATABASE allocbench")
            conn.close()
            yield f"postgresql://postgres@127.0.0.1:{port}/allocbench"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(tmp_path, postgres_url):
    # one process with two local workers (--n-jobs 2) plus a separate worker "on another machine"
    procs = [popen(tune_cmd(postgres_url, "pg", 24, "--worker", "--n-jobs", "2"), tmp_path),
             popen(tune_cmd(postgres_url, "pg", 24, "--worker"), tmp_path)]
    _check_shared(postgres_url, "pg", procs, 24, 3)
