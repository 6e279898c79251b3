import pandas as pd
import pytest

from cli import main
from allocbench.errors import ConfigError
from allocbench.schema import write_table
from analysis.report import build_report, find_inputs
from tests.analysis.conftest import make_table

FAST = ["--boot", "100", "--format", "png"]


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    """A tiny real `allocbench compare` output: 3 strategies x 2 seeds x 20 steps."""
    root = tmp_path_factory.mktemp("results")
    assert main(["compare", "--seeds", "2", "--steps", "20", "--eval-every", "5",
                 "--out", str(root / "default"), "--quiet"]) == 0
    return root


def test_figures_end_to_end_on_compare_output(compare_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", str(compare_dir), "--out", str(out), *FAST]) == 0
    names = {p.name for p in out.iterdir()}
    for fig in ["accuracy_vs_rollouts", "accuracy_vs_tokens", "speedup", "signal_vs_variance",
                "prompt_shares", "budget_anatomy"]:
        assert f"{fig}__sim_default.png" in names
    assert {"report.md", "report.html", "speedups.csv"} <= names
    assert not any(n.endswith(".pdf") for n in names)
    report = (out / "report.md").read_text()
    assert report.count("![") == 6
    assert "Skipped: pilot-fraction ablation" in report
    assert "Skipped: sim-vs-real ranking: needs both env=sim and env=real" in report
    assert "Student-t" in report and "bootstrap" in report
    html = (out / "report.html").read_text()
    assert html.count("<img") == 6
    speed = pd.read_csv(out / "speedups.csv")
    assert set(speed["reference"]) == {"grpo", "dapo"}

    # never overwrite without --force
    before = (out / "report.md").stat().st_mtime_ns
    assert main(["figures", str(compare_dir), "--out", str(out), *FAST]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert (out / "report.md").stat().st_mtime_ns == before
    assert main(["figures", str(compare_dir), "--out", str(out), "--force", *FAST]) == 0
    assert "1/1" in capsys.readouterr().err  # the progress bar: one scenario of one
    assert main(["figures", str(compare_dir), "--out", str(out), "--force", "--quiet", *FAST]) == 0
    assert "scenario" not in capsys.readouterr().err


def test_sim_real_ablation_and_trials(tmp_path, capsys):
    """Hand tables in several folders: sim main + two pilot-fraction arms, real, and trials."""
    root = tmp_path / "results"
    hp = lambda f: {"fast": {"pilot_fraction": f}}  # noqa: E731
    for name, t in {"sim/main": make_table(hp=hp(0.25)),
                    "sim/pf0.5": make_table(strategies=("grpo", "fast"), hp=hp(0.5)),
                    "real/run": make_table(env="real", scenario="gsm8k", hp=hp(0.25))}.items():
        (root / name).mkdir(parents=True)
        write_table(t, root / name / "runs.parquet")
    (root / "tune").mkdir()
    pd.DataFrame({"number": [0, 1, 2], "state": "COMPLETE", "value": [300.0, 250.0, 280.0],
                  "params_pilot_fraction": [0.1, 0.3, 0.5]}).to_csv(root / "tune" / "trials.csv", index=False)
    (root / "tune" / "best.toml").write_text("# allocbench tune\n# objective rollouts: mean rollouts = 250\n")
    out = tmp_path / "figs"
    written = build_report(root, out, n_boot=100, formats=("png",), progress=True)
    err = capsys.readouterr().err  # two bars: the scenarios, then the one sim-vs-real pair
    assert "2/2" in err and "sim-vs-real rankings: 100%" in err and "1/1" in err
    names = {p.name for p in written}
    assert {"pilot_fraction_ablation__sim_hand.png", "sim_vs_real_ranks__hand_gsm8k.png",
            "trials_pilot_fraction__tune.png", "rank_agreement.csv"} <= names
    report = (out / "report.md").read_text()
    assert "Kendall's tau-b = 1.00" in report
    # the duplicate grpo runs of sim/pf0.5 are kept once; the main arms come from sim/main
    assert "fast (3 seeds; from `sim/main`)" in report
    assert "1 other hyper-parameter setting(s) of fast" in report
    ranks = pd.read_csv(out / "rank_agreement.csv")
    assert (ranks["sim_rank"] == ranks["real_rank"]).all()


def test_out_inside_results_is_not_read(compare_dir):
    tables, trials = find_inputs(compare_dir, skip=compare_dir / "default")
    assert tables == [] and trials == []


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no results tables"),
    (lambda root: ((root / "x").mkdir(parents=True), (root / "x" / "runs.csv").write_text("a,b\n1,2\n")),
     "not a valid results table: results table lacks columns"),
    (lambda root: ((root / "x").mkdir(parents=True), (root / "x" / "runs.parquet").write_bytes(b"PAR1junk")),
     "not a valid results table"),
])
def test_bad_input_is_one_clear_error(tmp_path, capsys, setup, message):
    root = tmp_path / "results"
    setup(root)
    with pytest.raises(ConfigError, match=message):
        build_report(root, tmp_path / "out")
    assert main(["figures", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("allocbench: error:") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_options(compare_dir, tmp_path):
    for extra in (["--format", "pdf"], ["--boot", "5"], ["--level", "1.5"], ["--target", "2"]):
        assert main(["figures", str(compare_dir), "--out", str(tmp_path / "o"), *extra]) == 2


def test_a_hyper_parameter_added_later_reads_as_its_default():
    """grpo gained ``lag`` (default 0) after some tables were written: its runs in a table
    without hp_lag and in one with hp_lag = 0 are one arm; lag = 2 is another."""
    from analysis.report import arms

    def grpo(seed, lag=None):
        t = pd.DataFrame({"env": "sim", "scenario": "default", "strategy": "grpo", "seed": seed, "step": [0, 1],
                          "_source": f"s{seed}"})
        return t if lag is None else t.assign(hp_lag=lag)

    table = pd.concat([grpo(0), grpo(1, lag=0), grpo(2, lag=2)], ignore_index=True)
    assert table["hp_lag"].dtype == float  # what the concatenation of old and new tables gives
    found = arms(table).groupby("_arm")["seed"].apply(set).to_dict()
    assert sorted(found.values(), key=min) == [{0, 1}, {2}], found
