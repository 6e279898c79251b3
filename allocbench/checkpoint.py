"""Checkpoints of a run: the runner's state (rows, ledger, data-loader position, strategy memory,
random streams) plus whatever the environment saves through its ``save`` / ``load`` hooks.

Each checkpoint is written to a temporary folder and renamed into place, then ``latest`` is
switched to it atomically: a run killed at any moment resumes from the last complete checkpoint,
recomputes the steps after it exactly (same seed, same draws) and loses or repeats no row.
"""

from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

from allocbench.errors import ConfigError
from allocbench.schema import write_atomic

STATE = "runner.pkl"


@dataclass(frozen=True)
class Checkpoint:
    dir: Path
    every: int = 10  # steps between checkpoints (the last step is always saved)

    def __post_init__(self):
        if self.every <= 0:
            raise ConfigError(f"checkpoint interval must be positive, got {self.every}")

    def latest(self) -> Path | None:
        pointer = Path(self.dir) / "latest"
        return Path(self.dir) / pointer.read_text().strip() if pointer.exists() else None

    def save(self, step: int, state: dict, env_save) -> None:
        root = Path(self.dir)
        root.mkdir(parents=True, exist_ok=True)
        final, tmp = root / f"step-{step:06d}", root / f".step-{step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / STATE).write_bytes(pickle.dumps(state))
        if env_save is not None:
            (tmp / "env").mkdir()
            env_save(tmp / "env")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        previous = self.latest()
        write_atomic(root / "latest", lambda p: Path(p).write_text(final.name))
        if previous is not None and previous != final:
            shutil.rmtree(previous, ignore_errors=True)

    def load(self, fingerprint: dict, env_load) -> dict | None:
        """The saved runner state, after loading the environment's; None if there is none."""
        where = self.latest()
        if where is None:
            return None
        state = pickle.loads((where / STATE).read_bytes())
        if state["fingerprint"] != fingerprint:
            raise ConfigError(f"checkpoint in {self.dir} belongs to another run "
                              f"({state['fingerprint']}); use another folder")
        if (where / "env").exists():
            if env_load is None:
                raise ConfigError(f"checkpoint in {self.dir} holds environment state this environment cannot load")
            env_load(where / "env")
        return state
