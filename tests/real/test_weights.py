"""Shipped starting weights: the file matches its checksum, a run starts from exactly those
tensors, an altered file is refused, and the start matches the committed real results."""

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import real.weights as W  # noqa: E402
from allocbench.errors import ConfigError  # noqa: E402
from real import make_env  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_every_shipped_file_matches_its_checksum():
    entries = W.manifest()
    assert "tiny-arith-v1" in entries
    for name, entry in entries.items():
        assert W.sha256(W.FOLDER / f"{name}.safetensors") == entry["sha256"]


def test_the_tiny_presets_start_from_the_shipped_tensors():
    env = make_env("tiny-arith", seed=3, **{"data.train_size": 64})
    shipped = load_file(str(W.path_of("tiny-arith-v1")))
    model = env.info["world"].policy.model.state_dict()
    for name, tensor in shipped.items():
        assert torch.equal(model[name].cpu(), tensor), name


def test_an_altered_file_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    shutil.copytree(W.FOLDER, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    data = bytearray((folder / "tiny-arith-v1.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "tiny-arith-v1.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(W, "FOLDER", folder)
    monkeypatch.setattr(W, "MANIFEST", folder / "manifest.json")
    with pytest.raises(ConfigError, match="do not match their SHA-256"):
        W.path_of("tiny-arith-v1")
    with pytest.raises(ConfigError, match="no shipped weights named 'nope'"):
        W.path_of("nope")


def test_the_start_equals_the_committed_real_results():
    import pandas as pd

    committed = sorted((REPO / "results" / "real").glob("*/*/runs.parquet"))
    if not committed:
        pytest.skip("no committed real results")
    start = {float(pd.read_parquet(p).query("step == 0").eval_acc.iloc[0]) for p in committed}
    assert len(start) == 1  # every regime evaluates the same start on the same held-out set
    env = make_env("tiny-arith", seed=0, **{"data.train_size": 64})
    assert env.evaluator.evaluate()["eval_acc"] == pytest.approx(start.pop(), abs=1e-12)
