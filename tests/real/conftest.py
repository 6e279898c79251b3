import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _allocbench_cache(tmp_path_factory):
    """Warm-up weights and de-quantised models go to a per-session folder, unless the caller set
    ALLOCBENCH_CACHE (CI may keep one across runs)."""
    if os.environ.get("ALLOCBENCH_CACHE"):
        yield
        return
    os.environ["ALLOCBENCH_CACHE"] = str(tmp_path_factory.mktemp("allocbench-cache"))
    yield
    del os.environ["ALLOCBENCH_CACHE"]


# a tiny-arith environment small enough for unit tests (a few seconds to build and run)
SMALL = {"model.warmup_steps": 30, "data.train_size": 64, "data.eval_size": 12, "eval.k": 2,
         "run.train_batch": 4, "run.group_size": 4, "generation.max_new_tokens": 10}


@pytest.fixture
def small_overrides():
    return dict(SMALL)
