import pandas as pd
import pytest

from cli import main


def test_probe_writes_table_and_figure(tmp_path, capsys):
    out = tmp_path / "p"
    code = main(["probe", "--k", "4", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_parquet(out / "probe.parquet")
    assert len(table) == 8000 and {"pass_rate", "prompt_pass_rate", "correct"} <= set(table.columns)
    assert (out / "pass_rates.png").read_bytes()[:4] == b"\x89PNG"
    again = tmp_path / "q"
    code = main(["probe", "--k", "4", "--out", str(again), "--before", str(out / "probe.parquet"), "--quiet"])
    assert code == 0


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "--k must be a positive integer"),
    (["--scenario", "nope"], "unknown scenario 'nope'"),
    (["--env", "real", "--scenario", "nope"], "unknown real preset"),
    (["--env", "real", "--from", "/tmp/allocbench-no-such-run"], "no checkpoint there"),
    (["--from", "/tmp/allocbench-no-such-run"], "use it with --env real"),
    (["--before", "/tmp/allocbench-no-such.parquet"], "--before: no such file"),
])
def test_probe_bad_input_one_line_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "p"
    code = main(["probe", "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()
