"""Starting weights shipped with allocbench, so a preset starts from the same model on every
machine.

The tiny model is warmed up by 1,500 steps of supervised training before RL; on another CPU the
last bits of the float kernels differ and the warm-up amplifies them into another model (held-out
accuracy 0.354 on one machine, 0.464 on another). So the warmed-up weights are made once, here,
and shipped: ``NAME.safetensors`` beside this file, its SHA-256 in ``manifest.json``, checked on
every load.

    python -m real.weights tiny-arith        # remake (about 70 s on CPU) and update the manifest

remakes a preset's weights (``real/weights/__main__.py``) from its model and data sections:
warm-up problems drawn as ``real.env.warmup_problems`` draws them, the held-out set excluded,
trained by the code a run without shipped weights uses (``real.policy.supervised_warmup``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from allocbench.errors import ConfigError

FOLDER = Path(__file__).resolve().parent
MANIFEST = FOLDER / "manifest.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def path_of(name: str) -> Path:
    """The checked file of shipped weights ``name``; ConfigError if unknown or altered."""
    entry = manifest().get(name)
    path = FOLDER / f"{name}.safetensors"
    if entry is None or not path.exists():
        known = ", ".join(sorted(manifest())) or "none"
        raise ConfigError(f"no shipped weights named {name!r} (known: {known})")
    if sha256(path) != entry["sha256"]:
        raise ConfigError(f"shipped weights {path} do not match their SHA-256 in {MANIFEST}; "
                          f"reinstall allocbench or remake them with python -m real.weights {name}")
    return path


def load_into(model, name: str) -> None:
    from safetensors.torch import load_model

    load_model(model, str(path_of(name)), strict=True)
