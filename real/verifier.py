"""The math verifier: 0/1 rewards from math-verify, with a hard timeout.

``MathVerifier.score_many(completions, answers)`` extracts the last ``\\boxed{...}`` of each
completion (brace-matched), compares it with the gold answer by math-verify's equivalence
(fractions, decimals, LaTeX, sets, ...) and returns one 0/1 reward per completion.

Timeouts. math-verify bounds its own work with ``signal.alarm``, which only works on the main
thread and only in whole seconds. Here its timeouts are off and this module bounds each check
itself:

- on the main thread (``isolation="auto"`` or ``"inline"``): a ``setitimer`` deadline in the
  calling process, raised as a ``BaseException`` so no ``except Exception`` inside sympy or
  math-verify swallows it;
- off the main thread (``"auto"``), or always (``"process"``): a persistent worker process that
  checks on its own main thread with the same deadline; should a check hang where no signal can
  interrupt it (inside a C extension), the parent kills the worker after ``timeout_s`` plus a
  grace period, scores that answer 0 and starts a new worker for the rest.

A check that times out scores 0 and is counted in ``timeouts``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Sequence

import numpy as np

from allocbench.errors import ConfigError

_INT = re.compile(r"^[+-]?\d+$")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*")


class _Deadline(BaseException):
    """Raised by the interval timer inside a check that ran out of time."""


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) in
    ``text``, braces matched; None when there is none or it is unterminated."""
    found = None
    for m in _BOX.finditer(text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth == 0 and j < len(text):
                found = text[i + 1 : j]
        elif i < len(text):  # "\boxed 5": up to the next whitespace or "$"
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                found = token.group(0)
    return found


class AnswerScan:
    """Where a completion being generated stands with its boxed answer, fed piece by piece
    (each new token's text) so a long completion is scanned once: ``marker`` once a
    ``\\boxed`` (or ``\\fbox``, the markers ``last_boxed`` reads) has appeared, ``closed_at``
    (the index in the text just past the matched closing brace) once the first brace-delimited
    boxed answer has closed; None before. ``\\boxed 5`` (no brace) is a marker that closes
    nothing."""

    _LONGEST = max(len("\\boxed"), len("\\fbox"))  # a marker may be cut between two pieces

    def __init__(self):
        self.marker = False
        self.closed_at: int | None = None
        self._buf = ""  # the text not yet settled (a possible marker's beginning), from index _start
        self._start = 0
        self._depth = 0  # > 0: inside a boxed answer's braces
        self._after_marker = False  # a marker seen, its first non-space character not yet

    def feed(self, piece: str) -> None:
        if self.closed_at is not None:
            return
        buf, i = self._buf + piece, 0
        while self.closed_at is None and i < len(buf):
            if self._depth > 0:
                j = i
                while j < len(buf):
                    c = buf[j]
                    j += 1
                    if c == "{":
                        self._depth += 1
                    elif c == "}":
                        self._depth -= 1
                        if self._depth == 0:
                            self.closed_at = self._start + j
                            break
                i = j
            elif self._after_marker:
                while i < len(buf) and buf[i].isspace():
                    i += 1
                if i < len(buf):
                    self._after_marker = False
                    if buf[i] == "{":
                        self._depth, i = 1, i + 1
            else:
                m = _BOX.search(buf, i)
                if m is None:  # only a marker's beginning at the end may still be completed
                    i = max(i, len(buf) - self._LONGEST + 1)
                    break
                self.marker, self._after_marker, i = True, True, m.end()
        self._start += i
        self._buf = buf[i:]


_MV = None  # math_verify's parse/verify and configs, imported on first use (slow import)


def _math_verify():
    global _MV
    if _MV is None:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

        for name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils"):
            logging.getLogger(name).setLevel(logging.ERROR)  # its "timeout is disabled" warning
        import math_verify.grader
        import math_verify.parser

        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        _MV = dict(parse=parse, verify=verify,
                   pred=[LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)],
                   free=[LatexExtractionConfig(), ExprExtractionConfig()],
                   gold=[LatexExtractionConfig(), ExprExtractionConfig()])
    return _MV


def _equivalent(completion: str, answer: str, require_boxed: bool) -> tuple[float, str]:
    """(reward, reason) without any timeout: the caller bounds it."""
    answer = str(answer).strip()
    boxed = last_boxed(completion)
    if boxed is not None:
        boxed = boxed.strip()
        if not boxed:
            return 0.0, "no_answer"
        if boxed == answer:
            return 1.0, "exact"
        if _INT.match(boxed) and _INT.match(answer):
            return float(int(boxed) == int(answer)), "integer"
    elif require_boxed:
        return 0.0, "no_answer"
    mv = _math_verify()
    gold_text = answer if "\\boxed" in answer else f"${answer}$"
    gold = mv["parse"](gold_text, extraction_config=mv["gold"], parsing_timeout=None)
    if boxed is not None:
        pred = mv["parse"](f"\\boxed{{{boxed}}}", extraction_config=mv["pred"], parsing_timeout=None)
    else:
        pred = mv["parse"](completion, extraction_config=mv["free"], parsing_timeout=None)
    if not gold:
        return 0.0, "bad_gold"
    if not pred:
        return 0.0, "unparsed"
    return float(mv["verify"](gold, pred, timeout_seconds=None)), "math_verify"


def _check_with_deadline(completion: str, answer: str, require_boxed: bool, timeout_s: float) -> tuple[float, str]:
    """One check bounded by a ``setitimer`` deadline; main thread only."""

    def on_alarm(signum, frame):
        raise _Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return _equivalent(completion, answer, require_boxed)
    except _Deadline:
        return 0.0, "timeout"
    except Exception:  # noqa: BLE001 - a malformed answer scores 0, it never ends a run
        return 0.0, "error"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class MathVerifier:
    """0/1 math rewards; see the module docstring for how checks are bounded in time."""

    def __init__(self, timeout_s: float = 2.0, require_boxed: bool = True, isolation: str = "auto",
                 grace_s: float = 3.0):
        if timeout_s <= 0:
            raise ConfigError(f"verifier timeout must be positive, got {timeout_s}")
        if isolation not in ("auto", "inline", "process"):
            raise ConfigError(f"verifier isolation must be auto, inline or process; got {isolation!r}")
        self.timeout_s = float(timeout_s)
        self.require_boxed = require_boxed
        self.isolation = isolation
        self.grace_s = grace_s
        self.timeouts = 0  # checks that ran out of time (scored 0)
        self.checks = 0
        self._worker: _Worker | None = None
        self._lock = threading.Lock()

    def __call__(self, completion: str, answer: str) -> float:
        return float(self.score_many([completion], [answer])[0])

    def score_many(self, completions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        if len(completions) != len(answers):
            raise ValueError("one answer per completion")
        inline = self.isolation == "inline" or (
            self.isolation == "auto" and threading.current_thread() is threading.main_thread())
        if inline and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("isolation='inline' needs the main thread (signals); use 'auto' or 'process'")
        if inline:
            results = [_check_with_deadline(c, a, self.require_boxed, self.timeout_s)
                       for c, a in zip(completions, answers)]
        else:
            with self._lock:
                results = self._in_worker(list(completions), [str(a) for a in answers])
        self.checks += len(results)
        self.timeouts += sum(reason == "timeout" for _, reason in results)
        return np.array([r for r, _ in results], dtype=np.float64)

    def _in_worker(self, completions: list[str], answers: list[str]) -> list[tuple[float, str]]:
        results: list[tuple[float, str]] = []
        while len(results) < len(completions):
            if self._worker is None:
                self._worker = _Worker()
            todo = list(zip(completions[len(results):], answers[len(results):]))
            self._worker.send((todo, self.require_boxed, self.timeout_s))
            for _ in todo:
                got = self._worker.receive(self.timeout_s + self.grace_s)
                if got is None:  # hung where no signal reaches: kill it, score 0, go on
                    self._worker.kill()
                    self._worker = None
                    results.append((0.0, "timeout"))
                    break
                results.append(got)
        return results

    def close(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __getstate__(self):  # a verifier travels without its worker process
        state = self.__dict__.copy()
        state["_worker"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _Worker:
    """A child Python process running ``_serve``: length-prefixed pickles over its stdin/stdout."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "from real.verifier import _serve; _serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self._buffer = b""
        ready = self._read(4, time.monotonic() + 120.0)  # it imports math-verify first
        if ready != struct.pack("<I", 0):
            self.kill()
            raise RuntimeError("the verifier worker did not start")

    def send(self, message) -> None:
        data = pickle.dumps(message)
        self.proc.stdin.write(struct.pack("<I", len(data)) + data)
        self.proc.stdin.flush()

    def _read(self, k: int, deadline: float) -> bytes | None:
        import select

        fd = self.proc.stdout.fileno()
        while len(self._buffer) < k:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError("verifier worker exited unexpectedly")
            self._buffer += chunk
        out, self._buffer = self._buffer[:k], self._buffer[k:]
        return out

    def receive(self, timeout_s: float):
        """The next result, or None when none came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        head = self._read(4, deadline)
        if head is None:
            return None
        body = self._read(struct.unpack("<I", head)[0], deadline + 1.0)
        return None if body is None else pickle.loads(body)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def _serve() -> None:
    """The worker's loop: read a batch, answer each check as soon as it is done."""
    _math_verify()  # pay the import before the first deadline starts
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(struct.pack("<I", 0))  # ready
    stdout.flush()
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        todo, require_boxed, timeout_s = pickle.loads(stdin.read(struct.unpack("<I", head)[0]))
        for completion, answer in todo:
            data = pickle.dumps(_check_with_deadline(completion, answer, require_boxed, timeout_s))
            stdout.write(struct.pack("<I", len(data)) + data)
            stdout.flush()
