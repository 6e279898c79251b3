"""The ``allocbench`` command line: the composition root.

It parses commands and wires the core (``allocbench``) to the environments (``sim``, ``real``)
and to ``analysis``. It may import every package; none of them imports it. Each command lives
in its own module with an ``add_parser(subparsers)``; heavy imports (torch, matplotlib,
optuna) happen inside the command, so ``allocbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from allocbench.errors import AllocbenchError

COMMANDS = ("compare", "train", "probe", "tune", "calibrate", "figures", "validate", "regret")  # modules of this package, in --help order


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AllocbenchError, FileNotFoundError) as e:
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allocbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of the output went away (``allocbench ... | head``): stop quietly. Files are
        # written before the lines that report them; later output goes nowhere, not to a traceback.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return 141  # 128 + SIGPIPE, what a shell reports for a writer the pipe killed


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="allocbench",
        description="Compare rollout-allocation strategies for GRPO-style RL post-training: "
        "which prompts get rollouts at each step, and how many.")
    parser.add_argument("--version", action="version", version=f"allocbench {_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cli.{name}").add_parser(sub)
    return parser


def _version() -> str:
    try:
        return version("allocbench")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown (not installed)"
