"""Any allocbench strategy inside TRL's ``GRPOTrainer``: ``AllocGRPOTrainer`` (real/trl/trainer.py).

Needs TRL (``pip install -e '.[trl]'``); nothing else in allocbench imports this package, so
the rest runs without TRL. ``python -m real.trl --help``: the plug-in on the tiny-arith model
(real/trl/tiny.py), the runnable example and the agreement experiment of results/trl.
"""

from __future__ import annotations

try:
    import trl  # noqa: F401
except ImportError as e:  # one line instead of a traceback into TRL's absence
    raise ImportError(f"real.trl needs TRL ({e}); pip install -e '.[trl]'") from None

from real.trl.trainer import AllocGRPOTrainer

__all__ = ["AllocGRPOTrainer"]
