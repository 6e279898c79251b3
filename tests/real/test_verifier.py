import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("math_verify")

from real.verifier import MathVerifier, last_boxed  # noqa: E402


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout_s=1.0)
    yield v
    v.close()


@pytest.mark.parametrize("completion, answer", [
    ("so the answer is \\boxed{1/2}", "0.5"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{0.5}", "\\frac12"),
    ("\\boxed{\\dfrac{3}{4}}", "3/4"),
    ("\\boxed{1.5}", "\\frac{3}{2}"),
    ("\\boxed{12.0}", "12"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}"),
    ("\\boxed{2\\pi}", "2\\pi"),
    ("\\boxed{x = 2}", "2"),
    ("\\boxed{\\frac{1}{n+1}}", "1/(n+1)"),
    ("first \\boxed{13}, then on reflection \\boxed{12}", "12"),  # the last box counts
    ("\\boxed{\\frac{a}{\\sqrt{b}}}", "\\frac{a}{\\sqrt{b}}"),  # nested braces
    ("\\boxed{047}", "47"),
])
def test_equivalent_answers_score_one(verifier, completion, answer):
    assert verifier(completion, answer) == 1.0


@pytest.mark.parametrize("completion, answer", [
    ("\\boxed{13}", "12"),
    ("\\boxed{0.333}", "1/3"),  # rounding is not equivalence
    ("the answer is 12", "12"),  # no box: no answer
    ("", "12"),
    ("\\boxed{}", "12"),
    ("\\boxed{12", "12"),  # unterminated
    ("\\boxed{12} then \\boxed{13}", "12"),
])
def test_wrong_or_missing_answers_score_zero(verifier, completion, answer):
    assert verifier(completion, answer) == 0.0


def test_last_boxed_extraction():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("\\boxed 7 apples") == "7"
    assert last_boxed("\\fbox{3}") == "3"
    assert last_boxed("nothing") is None


def test_free_form_answers_without_a_box_when_allowed():
    v = MathVerifier(require_boxed=False, isolation="inline")
    assert v("so it is $\\frac{1}{2}$", "0.5") == 1.0


def test_pathological_answer_times_out_on_the_main_thread():
    v = MathVerifier(timeout_s=0.5, isolation="inline")
    start = time.perf_counter()
    assert v.score_many(["\\boxed{9^{9^{9^{9}}}}", "\\boxed{4}"], ["1", "4"]).tolist() == [0.0, 1.0]
    assert time.perf_counter() - start < 5
    assert v.timeouts == 1


# run in a child process: a check that never times out holds the GIL inside C (big-integer
# powers), so nothing in this process could end it; the child is killed from outside instead
_FROM_A_THREAD = r"""
import json, threading, time
from real.verifier import MathVerifier

v = MathVerifier(timeout_s=0.5)  # "auto": off the main thread, checks run in the worker process
got = {}

def work():
    got["warm"] = v("\\boxed{1}", "1")  # starts the worker process
    worker = v._worker
    start = time.perf_counter()
    got["scores"] = v.score_many(
        ["\\boxed{\\frac{3}{4}}", "\\boxed{9^{9^{9^{9}}}}", "\\boxed{5}"], ["0.75", "1", "6"]).tolist()
    got["seconds"] = time.perf_counter() - start
    got["same_worker"] = v._worker is worker

thread = threading.Thread(target=work)
thread.start()
thread.join()
got.update(timeouts=v.timeouts, checks=v.checks, timeout_s=v.timeout_s, grace_s=v.grace_s)
v.close()
print(json.dumps(got))
"""


def test_works_from_a_worker_thread_with_a_timeout():
    try:
        child = subprocess.run([sys.executable, "-c", _FROM_A_THREAD], capture_output=True, text=True,
                               timeout=60, cwd=Path(__file__).parents[2],
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        pytest.fail("a check off the main thread never returned: no timeout there")
    assert child.returncode == 0, child.stderr
    got = json.loads(child.stdout.splitlines()[-1])
    assert got["warm"] == 1.0 and got["scores"] == [1.0, 0.0, 0.0]
    assert got["timeouts"] == 1 and got["checks"] == 4  # the tower of powers ran out of time
    # the worker's own deadline ended it, not the parent's kill at timeout_s + grace_s, so the
    # worker lives on for the next check
    assert got["timeout_s"] <= got["seconds"] < got["timeout_s"] + got["grace_s"]
    assert got["same_worker"]


def test_a_hung_worker_is_killed_and_replaced():
    # the worker's own deadline (5 s) is later than the parent's patience (0.5 s): the parent
    # must kill it, score 0 and carry on with a fresh worker
    v = MathVerifier(timeout_s=5.0, isolation="process")
    v.grace_s = -4.5
    try:
        scores = v.score_many(["\\boxed{9^{9^{9^{9}}}}", "\\boxed{2}"], ["1", "2"])
        assert scores.tolist() == [0.0, 1.0]
        assert v.timeouts == 1
    finally:
        v.close()


def test_inline_isolation_refuses_worker_threads():
    v = MathVerifier(isolation="inline")
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, v, "\\boxed{1}", "1")))
    thread.start()
    thread.join()
    assert errors
