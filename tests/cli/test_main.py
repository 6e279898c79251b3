"""``cli.main``: how the command line ends when a command cannot finish its output."""

from __future__ import annotations

import io
import sys

import pandas as pd

from allocbench.schema import write_table
from cli import main
from tests.analysis.test_validate import REAL, SIM, build


class ClosedPipe(io.StringIO):
    """stdout whose reader went away (``allocbench ... | head``)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_quietly_and_keeps_the_files(tmp_path, monkeypatch, capsys):
    sim, real, out = tmp_path / "sim", tmp_path / "real", tmp_path / "out"
    for folder, table in ((sim, build(SIM)), (real, build(REAL, "real", "hand-real"))):
        folder.mkdir()
        write_table(table, folder / "runs.parquet")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["validate", str(sim), str(real), "--out", str(out), "--n-boot", "20", "--splits", "5"])
    assert code == 141 and capsys.readouterr().err == ""  # no traceback, no error line
    # the files are written before the lines that report them
    assert pd.read_csv(out / "agreement.csv").loc[0, "n_strategies"] == 4
