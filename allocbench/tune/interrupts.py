"""Ctrl-C and SIGTERM end a study cleanly, never in the middle of a storage write."""

from __future__ import annotations

import signal
from contextlib import contextmanager


class Interrupts:
    """Ctrl-C and SIGTERM end a study cleanly. Inside ``optimize`` the signal is held until a
    safe point (the next progress report of a run, or the end of a trial), so it never lands
    while Optuna writes a trial to the storage, which would leave a traceback instead of a
    stopped, resumable study; a second signal is not held."""

    deferring = False
    pending = False

    @classmethod
    def handler(cls, signum, frame):
        if cls.deferring and not cls.pending:
            cls.pending = True
            return
        raise KeyboardInterrupt

    @classmethod
    def check(cls, *_):
        if cls.pending:
            cls.pending = False
            raise KeyboardInterrupt


def install_interrupts() -> dict:
    """Route SIGINT and SIGTERM (a scheduler, ``kill``) through ``Interrupts``; returns the
    old handlers (to give to ``restore_interrupts``)."""
    try:
        return {sig: signal.signal(sig, Interrupts.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        return {}


def restore_interrupts(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@contextmanager
def routed_interrupts():
    """``install_interrupts`` for the block, the old handlers back after it (a command's body)."""
    previous = install_interrupts()
    try:
        yield
    finally:
        restore_interrupts(previous)


@contextmanager
def deferred_interrupts():
    """Hold one Ctrl-C / SIGTERM until the block has ended, then raise it (``Interrupts``)."""
    Interrupts.deferring = True
    try:
        yield
    finally:
        Interrupts.deferring = False
    Interrupts.check()
