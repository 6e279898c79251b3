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


@pytest.fixture(autouse=True)
def _auto_device_is_cpu_unless_marked_gpu(request, monkeypatch):
    """These tests pin float32 numbers on the CPU, as CI (no GPU) runs them; on a machine with a
    GPU, ``model.device = "auto"`` would put them on CUDA in bfloat16. Only the tests marked gpu
    see the GPU."""
    if request.node.get_closest_marker("gpu") is not None:
        return
    try:
        import real.policy
    except ImportError:  # no torch: the tests that need it skip themselves
        return
    resolve = real.policy.resolve_device
    monkeypatch.setattr(real.policy, "resolve_device", lambda name: resolve("cpu" if name == "auto" else name))
