"""GPU checks of chapter 20 ("Dropout in compilers and across processes"): one JSON file.

Run from the repository root (torch, numpy and this repository; triton on CUDA machines):

    OUT=/tmp/out python tools/gpu/compile_cuda.py

It writes ``$OUT/compile_cuda.json`` (default ``/tmp/out``) with the versions, the device name
and, per check, what was observed. On a machine without CUDA the CUDA checks are recorded as
skipped and only the CPU check runs. Checks:

- ``cpu``: the compiled CPU mask equals dropoutlib's NumPy emulation (as tests/ check);
- ``cuda_compiled``: ``torch.compile(F.dropout)`` on CUDA: is its mask the eager mask? Which
  NumPy emulation of Inductor's Triton random stream (``tl.rand`` or ``rand4x`` layout)
  reproduces it, from the seed that ``randint`` on the CUDA generator draws? Is the output
  ``(m * x) * c`` bit for bit? What is saved for backward?
- ``cuda_fallback_random``: with ``torch._inductor.config.fallback_random = True`` the
  compiled mask equals eager;
- ``cuda_align_random_eager``: the same with ``align_random_eager`` (if that option exists);
- ``cuda_dtensor``: ``F.dropout`` on a DTensor sharded / replicated over a 2-process mesh on
  the one GPU (gloo, 127.0.0.1): does DTensor install its ``OffsetBasedRNGTracker``, do the
  shards get different masks and the replicas the same one?

Every check is wrapped: an exception is recorded as text, never hidden.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dropoutlib.numpy.torch_rng import TorchCPUGenerator
from dropoutlib.parallel import run_workers
from dropoutlib.torch.inductor_rng import (
    inductor_dropout,
    inductor_seeds,
    triton_rand,
)

P = 0.3
SHAPE = (512, 1000)
INT64 = torch.iinfo(torch.int64)


def _dropout(x):
    return F.dropout(x, P, training=True)


def _guarded(fn):
    start = time.perf_counter()
    try:
        result = fn()
    except Exception:  # record, do not hide
        result = {"error": traceback.format_exc(limit=3)}
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def check_cpu():
    torch._dynamo.reset()
    compiled = torch.compile(_dropout)
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(11)
    y = compiled(x)
    (seed,) = inductor_seeds(TorchCPUGenerator(11), 1)
    return {
        "matches_numpy_emulation": bool(
            np.array_equal(y.numpy(), inductor_dropout(x.numpy(), P, int(seed)))
        )
    }


def check_cuda_compiled():
    torch._dynamo.reset()
    compiled = torch.compile(_dropout)
    x = torch.rand(SHAPE, device="cuda", generator=torch.Generator("cuda").manual_seed(1)) + 0.5
    x.requires_grad_(True)
    saved = []
    torch.cuda.manual_seed(21)
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append((str(t.dtype), list(t.shape))) or t, lambda t: t
    ):
        y = compiled(x)
    torch.cuda.manual_seed(21)
    seed = int(torch.randint(INT64.min, INT64.max, [1], device="cuda").item())
    torch.cuda.manual_seed(21)
    eager = F.dropout(x.detach(), P)
    mask = (y != 0).detach().cpu().numpy().reshape(-1)
    n = mask.size
    layouts = {
        layout: bool(np.array_equal(mask, triton_rand(seed, n, layout) > np.float32(P)))
        for layout in ("rand", "rand4x")
    }
    c = np.float32(1.0 / (1.0 - P))
    expected = (mask.reshape(SHAPE).astype(np.float32) * x.detach().cpu().numpy()) * c
    return {
        "equals_eager_mask": bool(torch.equal(y.detach() != 0, eager != 0)),
        "mask_agreement_with_eager": float(((y.detach() != 0) == (eager != 0)).float().mean()),
        "keep_fraction": float(mask.mean()),
        "numpy_emulation_matches": layouts,
        "output_is_mask_times_x_times_c": bool(np.array_equal(y.detach().cpu().numpy(), expected)),
        "saved_for_backward": saved,
        "seed_from_cuda_randint": seed,
    }


def _compiled_equals_eager(**config):
    import torch._inductor.config as inductor_config

    x = torch.randn(SHAPE, device="cuda")
    with inductor_config.patch(**config):
        torch._dynamo.reset()
        compiled = torch.compile(_dropout)
        torch.cuda.manual_seed(31)
        y = compiled(x)
    torch.cuda.manual_seed(31)
    eager = F.dropout(x, P)
    torch._dynamo.reset()
    return {
        "config": config,
        "equals_eager_bit_for_bit": bool(torch.equal(y, eager)),
        "mask_equals_eager": bool(torch.equal(y != 0, eager != 0)),
    }


def check_cuda_align_random_eager():
    import torch._inductor.config as inductor_config

    if not hasattr(inductor_config, "align_random_eager"):
        return {"skipped": "torch._inductor.config has no align_random_eager in this version"}
    return _compiled_equals_eager(align_random_eager=True)


def dtensor_cuda_worker(rank, world_size, shape, p, seed):
    """DTensor dropout over a CUDA mesh (both ranks on the one GPU, gloo)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor import _random as dtensor_random

    mesh = init_device_mesh("cuda", (world_size,))
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    rows, cols = shape
    out = {"rng_supported": bool(dtensor_random.is_rng_supported_mesh(mesh))}
    for name, placement, local_cols in (
        ("shard", Shard(1), cols // world_size),
        ("replicate", Replicate(), cols),
    ):
        local = torch.ones(rows, local_cols, device="cuda")  # from_local: no communication
        tensor = DTensor.from_local(local, mesh, [placement], run_check=False)
        dropped = F.dropout(tensor, p, training=True)
        out[name] = (dropped.to_local() != 0).cpu().numpy()
    tracker = dtensor_random._rng_tracker
    out["tracker"] = None if tracker is None else type(tracker).__name__
    return out


def check_cuda_dtensor():
    outs = run_workers(dtensor_cuda_worker, 2, (8, 64), 0.5, 5, timeout=120)
    same_shards = bool(np.array_equal(outs[0]["shard"], outs[1]["shard"]))
    return {
        "rng_supported": [o["rng_supported"] for o in outs],
        "tracker": [o["tracker"] for o in outs],
        "shard_masks_equal_across_ranks": same_shards,
        "replicate_masks_equal_across_ranks": bool(
            np.array_equal(outs[0]["replicate"], outs[1]["replicate"])
        ),
        "shard_keep_fraction": [float(o["shard"].mean()) for o in outs],
    }


def main() -> None:
    out_dir = Path(os.environ.get("OUT", "/tmp/out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    result = {
        "command": "OUT=... python tools/gpu/compile_cuda.py",
        "torch": torch.__version__,
        "triton": triton_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "machine": platform.machine(),
        "p": P,
        "shape": list(SHAPE),
        "cpu": _guarded(check_cpu),
    }
    skipped = {"skipped": "no CUDA device"}
    if cuda:
        result["cuda_compiled"] = _guarded(check_cuda_compiled)
        result["cuda_fallback_random"] = _guarded(
            lambda: _compiled_equals_eager(fallback_random=True)
        )
        result["cuda_align_random_eager"] = _guarded(check_cuda_align_random_eager)
        result["cuda_dtensor"] = _guarded(check_cuda_dtensor)
    else:
        for key in (
            "cuda_compiled",
            "cuda_fallback_random",
            "cuda_align_random_eager",
            "cuda_dtensor",
        ):
            result[key] = skipped
    path = out_dir / "compile_cuda.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
