"""learner.fsdp: the GRPO learner sharded with FSDP2 over torch.distributed ranks (gloo on CPU).

Two processes with one FSDP learner between them take the same optimizer step as one process
with the whole model: the same loss and the same weights after it."""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("math_verify")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from real import make_env  # noqa: E402
from real.learner import GRPOLearner  # noqa: E402
from tests.real.conftest import SMALL  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")

OVERRIDES = {**SMALL, "generation.backend": "torch", "learner.micro_batch_rows": 3, "learner.lr": 1e-2,
             "model.cpu_threads": 1}
REQUESTS = [{i: 4 for i in range(4)}, {9: 5}, {11: 1}]  # even, uneven, and fewer rows than ranks


def coin(texts, answers):
    return np.array([float(zlib.crc32(f"{t}|{a}".encode()) % 2) for t, a in zip(texts, answers)])


def steps(env):
    """Three learner updates on fixed requests; (stats, outcomes) of each."""
    env.info["world"].verifier.score_many = coin
    out = []
    for requests in REQUESTS:
        outcomes = env.sampler.sample(requests)
        stats = env.learner.update(outcomes)
        out.append(({k: stats[k] for k in ("loss", "pg_loss", "entropy", "grad_norm", "tokens")},
                    [(o.prompt_id, o.rewards.tolist(), o.tokens.tolist()) for o in outcomes]))
    return out


def full_weights(model):
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
            for k, v in model.state_dict().items()}


def _rank(rank, world, port, folder):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    env = make_env("tiny-arith", seed=0, **{**OVERRIDES, "learner.fsdp": True})
    learner = env.info["world"].learner  # the GRPO learner behind the environment's
    assert learner.world == world and learner.rank == rank
    result = steps(env)
    weights = full_weights(env.info["world"].policy.model)
    if rank == 0:
        torch.save({"steps": result, "weights": weights}, f"{folder}/fsdp.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [1, 2])
def test_fsdp_step_equals_the_single_process_step(tmp_path, world):
    mp.spawn(_rank, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    sharded = torch.load(tmp_path / "fsdp.pt", weights_only=False)
    env = make_env("tiny-arith", seed=0, **OVERRIDES)
    plain = steps(env)
    weights = full_weights(env.info["world"].policy.model)
    for (s_stats, s_groups), (p_stats, p_groups) in zip(sharded["steps"], plain):
        assert s_groups == p_groups  # the same rollouts were drawn
        for key in p_stats:
            assert s_stats[key] == pytest.approx(p_stats[key], rel=1e-4, abs=1e-6), key
    assert plain[0][0]["grad_norm"] > 0 and plain[0][0]["tokens"] > 0
    # Adam turns float noise in a near-zero gradient entry into up to lr-sized steps: 1% of lr
    for name, w in weights.items():
        torch.testing.assert_close(sharded["weights"][name], w, rtol=0, atol=1e-2 * OVERRIDES["learner.lr"], msg=name)


def test_chunks_give_every_rank_the_same_number_of_micro_batches():
    learner = GRPOLearner.__new__(GRPOLearner)
    learner.cfg = type("Cfg", (), {"micro_batch_rows": 3, "noise_scale_parts": 4})()
    for n_rows in (1, 2, 5, 7, 16):
        mb = np.arange(n_rows)
        learner.world = 1
        learner.rank = 0
        chunks = learner._chunks(mb)
        assert sorted(np.concatenate([c for c, _, _ in chunks]).tolist()) == list(range(n_rows))
        assert all(len(c) <= 3 for c, _, _ in chunks)
        # a noise-scale part ends on the last chunk; with two rows or more, at least two parts
        assert chunks[-1][2] and sum(end for _, _, end in chunks) == (min(4, n_rows) if n_rows >= 2 else 1)
        for world in (2, 3):
            counts, rows = set(), []
            for rank in range(world):
                learner.world, learner.rank = world, rank
                chunks = learner._chunks(mb)
                counts.add(len(chunks))
                assert all(len(c) <= 3 and len(c) > 0 for c, _, _ in chunks)
                rows += [i for c, w, _ in chunks if w == 1.0 for i in c.tolist()]
            assert len(counts) == 1  # the same number of collectives on every rank
            assert sorted(rows) == list(range(n_rows))  # every row learned once
