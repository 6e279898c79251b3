"""The progress bar of the long commands (compare, probe, figures), one policy for all: on
stderr, redrawn ten times a second to a terminal and at most a line every 30 s to a log file."""

from __future__ import annotations

import sys


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar over ``iterable`` (or with ``total=``), with the policy above; other keyword
    arguments (unit, desc, disable, ...) go to tqdm."""
    from tqdm import tqdm  # imported by the commands that draw one, not by every CLI start

    return tqdm(iterable, file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 30.0, **kwargs)
