"""Dropout on real torch.distributed process groups (gloo, 127.0.0.1, >= 2 processes).

Starting processes costs seconds, so one module-scoped fixture runs every 2-process case in one
process group (``call_sequence``); pytest-xdist workers share its result
through a file.
"""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
from filelock import FileLock

from dropoutlib.numpy.functional import inverted_scale
from dropoutlib.parallel import (
    call_sequence,
    dot_error_bound,
    dropout_seeds,
    run_workers,
    tp_mlp_reference,
    tp_mlp_worker,
)
from dropoutlib.parallel.data_parallel import ddp_reference, ddp_worker, dtensor_dropout_worker

P, SEED = 0.3, 7
U = 2.0**-24
TIMEOUT = 60


def _problem(n=16, d=24, h=64):
    rng = np.random.default_rng(2014)
    x = rng.standard_normal((n, d), dtype=np.float32)
    a = rng.standard_normal((d, h), dtype=np.float32) / np.float32(np.sqrt(d))
    b = rng.standard_normal((h, d), dtype=np.float32) / np.float32(np.sqrt(h))
    g = rng.standard_normal((n, d), dtype=np.float32)
    return x, a, b, g


def _ddp_problem(n=16, d=8, h=32, o=2):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, d), dtype=np.float32)
    t = rng.standard_normal((n, o), dtype=np.float32)
    w1 = rng.standard_normal((h, d), dtype=np.float32) / np.float32(np.sqrt(d))
    w2 = rng.standard_normal((o, h), dtype=np.float32) / np.float32(np.sqrt(h))
    return x, t, w1, w2


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every 2-process case, run once per test session (shared by pytest-xdist workers)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _run_two_ranks()
    shared = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    with FileLock(str(shared / "dropoutlib-parallel.lock")):
        cache = shared / "dropoutlib-parallel.pkl"
        if not cache.exists():
            cache.write_bytes(pickle.dumps(_run_two_ranks()))
        return pickle.loads(cache.read_bytes())


def _run_two_ranks():
    problem = _problem()
    calls = [
        (tp_mlp_worker, (*problem, P, SEED, 0, "megatron")),
        (tp_mlp_worker, (*problem, P, SEED, 0, "same_shard_masks")),
        (tp_mlp_worker, (*problem, P, SEED, 0, "rank_replica_masks")),
        (ddp_worker, (*_ddp_problem(), 0.5, SEED)),
        (dtensor_dropout_worker, ((4, 16), 0.5, SEED)),
    ]
    per_rank = run_workers(call_sequence, 2, calls, timeout=TIMEOUT)
    names = ["megatron", "same_shard_masks", "rank_replica_masks", "ddp", "dtensor"]
    return {name: [ranks[i] for ranks in per_rank] for i, name in enumerate(names)}


def _check_tp(outs, world_size):
    problem = _problem()
    ref = tp_mlp_reference(world_size, *problem, P, SEED, 0)
    width = problem[1].shape[1] // world_size
    for rank, out in enumerate(outs):
        cols = slice(rank * width, (rank + 1) * width)
        # no reduction crosses ranks here: bit for bit
        np.testing.assert_array_equal(out["hidden"], ref["hidden"][:, cols])
        np.testing.assert_array_equal(out["grad_a"], ref["grad_a"][:, cols])
        np.testing.assert_array_equal(out["grad_b"], ref["grad_b"][cols])
        # replicated tensors: identical on every rank
        for key in ("z", "y", "grad_x"):
            np.testing.assert_array_equal(out[key], outs[0][key])
    # the all-reduced sums: another summation order, within the derived bound
    z, y = outs[0]["z"].astype(np.float64), outs[0]["y"].astype(np.float64)
    assert np.all(np.abs(z - ref["z"]) <= dot_error_bound(ref["hidden"], problem[2]))
    c = float(inverted_scale(P, np.dtype(np.float32)))
    y_bound = c * (np.abs(z - ref["z"]) + U * (np.abs(z) + np.abs(ref["z"])))
    assert np.all(np.abs(y - ref["y"]) <= y_bound)
    assert np.array_equal(y == 0, ~ref["out_mask"])
    gx = outs[0]["grad_x"].astype(np.float64)
    assert np.all(np.abs(gx - ref["grad_x"]) <= dot_error_bound(ref["grad_pre"], problem[1].T))


def test_tensor_parallel_two_ranks_equals_single_process(two_ranks):
    _check_tp(two_ranks["megatron"], 2)


def test_megatron_seed_rule():
    assert dropout_seeds(100, 0) == (2818, 100)
    assert dropout_seeds(100, 3) == (2821, 100)
    with pytest.raises(ValueError, match="rule must be one of"):
        dropout_seeds(1, 0, "random")


def test_same_shard_masks_are_perfectly_correlated(two_ranks):
    kept = [o["hidden"] != 0 for o in two_ranks["same_shard_masks"]]
    assert np.array_equal(kept[0], kept[1])
    right = [o["hidden"] != 0 for o in two_ranks["megatron"]]
    assert not np.array_equal(right[0], right[1])


def test_rank_dependent_replica_masks_make_copies_diverge(two_ranks):
    outs = two_ranks["rank_replica_masks"]
    np.testing.assert_array_equal(outs[0]["z"], outs[1]["z"])  # same input to the dropout
    assert not np.array_equal(outs[0]["y"], outs[1]["y"])  # different copies after it


def test_ddp_gradient_equals_concatenated_batch(two_ranks):
    outs = two_ranks["ddp"]
    ref = ddp_reference(2, *_ddp_problem(), 0.5, SEED)
    assert not np.array_equal(outs[0]["mask"], outs[1]["mask"])
    np.testing.assert_array_equal(np.concatenate([o["mask"] for o in outs]), ref["mask"])
    for name in ("0.weight", "0.bias", "3.weight", "3.bias"):
        np.testing.assert_array_equal(outs[0][name], outs[1][name])  # all-reduced
        diff = np.abs(outs[0][name].astype(np.float64) - ref[name])
        assert np.all(diff <= ref[f"bound/{name}"]), name


def test_dtensor_on_cpu_has_no_rng_tracker(two_ranks):
    outs = two_ranks["dtensor"]
    assert [o["rng_supported"] for o in outs] == [False, False]
    assert [o["tracker"] for o in outs] == [None, None]
    # every rank uses its own generator with the same seed: the shards get the same mask
    assert outs[0]["shard_mask"].shape == (4, 8)
    np.testing.assert_array_equal(outs[0]["shard_mask"], outs[1]["shard_mask"])
    np.testing.assert_array_equal(outs[0]["replicate_mask"], outs[1]["replicate_mask"])


def _fails(rank, world_size):
    if rank == 1:
        raise ValueError("boom on rank 1")
    return rank


def _sleeps(rank, world_size):
    time.sleep(60)


def test_worker_failure_and_timeout_are_reported():
    with pytest.raises(RuntimeError, match="boom on rank 1"):
        run_workers(_fails, 2, timeout=TIMEOUT)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within"):
        run_workers(_sleeps, 2, timeout=3)
    assert time.monotonic() - start < 30
    with pytest.raises(ValueError, match="world_size"):
        run_workers(_fails, 0)
