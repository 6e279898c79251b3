"""python -m real.weights PRESET: remake a preset's shipped starting weights (real/weights)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from allocbench.errors import ConfigError
from real.weights import FOLDER, MANIFEST, manifest, sha256


def make(preset_name: str) -> Path:
    """Warm the preset's tiny model up and write its weights and manifest entry."""
    import dataclasses
    import time

    from safetensors.torch import save_model

    from real import presets as P
    from real.env import load_data, warmup_problems
    from real.policy import supervised_warmup, tiny_model

    preset = P.get_preset(preset_name)
    cfg = preset.model
    if cfg.name != "tiny" or cfg.weights is None:
        raise ConfigError(f"preset {preset_name!r} names no shipped weights of the tiny model")
    _, held_out, _ = load_data(preset)
    model, tokenizer = tiny_model(cfg)
    start = time.perf_counter()
    losses = supervised_warmup(model, tokenizer, cfg, warmup_problems(preset, held_out))
    path = FOLDER / f"{cfg.weights}.safetensors"
    save_model(model, str(path))
    os.chmod(path, 0o644)
    entries = manifest()
    import torch
    import transformers

    entries[cfg.weights] = {
        "sha256": sha256(path), "preset": preset_name,
        "model": {k: v for k, v in dataclasses.asdict(cfg).items() if k.startswith(("tiny_", "warmup_", "seed"))},
        "final_warmup_loss": round(losses[-1], 4), "warmup_seconds": round(time.perf_counter() - start, 1),
        "made_with": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    MANIFEST.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m real.weights PRESET")
    print(f"wrote {make(sys.argv[1])}")
