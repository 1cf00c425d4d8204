r"""Measure chapter 6's statements about CUDA dropout on a CUDA device and write them as JSON.

Chapter 6 reads these statements from ATen's source (``aten/src/ATen/native/cuda/Dropout.cu``,
``aten/src/ATen/native/Dropout.cpp`` and ``tools/autograd/derivatives.yaml``); this script runs
them. Each check compares what the GPU computed with *candidate formulas* evaluated on the CPU in
explicitly chosen dtypes, and records how many elements each candidate gets wrong (0 means the
candidate is the formula the GPU used). With :math:`q = 1 - p`, :math:`\mathrm{fl}_d` rounding to
the input's dtype :math:`d` and :math:`\mathrm{fl}_a` to its accumulate type :math:`a` (float32
for float16, bfloat16 and float32; float64 for float64), the candidates for a kept output are

- ``cpu_recipe``: :math:`\mathrm{fl}_d(x \cdot \mathrm{fl}_d(1/\mathrm{fl}_a(q)))`, the CPU's
  ``_dropout_impl`` (noise divided by :math:`q` in dtype :math:`d`, then multiplied);
- ``acc_scale``: :math:`\mathrm{fl}_d(\mathrm{fl}_a(x \cdot \mathrm{fl}_a(1/\mathrm{fl}_a(q))))`,
  the scale kept in the accumulate type, as the source of ``fused_dropout_kernel_vec`` reads;
- ``double_scale``: :math:`\mathrm{fl}_d(\mathrm{fl}_a(x \cdot \mathrm{fl}_a(1/q)))`, the scale
  computed in double and cast to the accumulate type (the CUDA backward; CPU ``native_dropout``
  for float32 and float64);
- ``double_scale_in_dtype``: :math:`\mathrm{fl}_d(x \cdot \mathrm{fl}_d(1/q))` (CPU
  ``native_dropout`` for float16 and bfloat16).

Run (about 10 s after CUDA initialises)::

    python -m benchmarks.cuda_facts --out benchmarks/results/cuda_facts.json

Without a CUDA device it exits with status 2 and a message. Every check runs in its own
``try``/``except``: a failure is recorded as ``{"error": ...}`` and the other checks still run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
P_VALUES = (0.1, 0.2, 0.3, 0.42, 0.5, 0.7, 0.74, 0.9, 0.97)
P_GRID = tuple(k / 1000 for k in range(1, 1000))
SEED = 2014


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """ATen's ``acc_type<scalar_t, /*is_cuda=*/true>``: float64 for float64, else float32."""
    if dtype not in DTYPES.values():
        raise TypeError(f"expected a floating dtype among {list(DTYPES)}, got {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def candidate_scales(p: float, dtype: torch.dtype) -> dict[str, float]:
    r"""The candidate constants :math:`1/(1-p)`, each rounded as one code path rounds it.

    Returns a dict of Python floats (exact values of the rounded constants):
    ``"cpu_recipe"`` :math:`\mathrm{fl}_d(1/\mathrm{fl}_a(q))`, ``"acc_scale"``
    :math:`\mathrm{fl}_a(1/\mathrm{fl}_a(q))`, ``"double_scale"`` :math:`\mathrm{fl}_a(1/q)` and
    ``"double_scale_in_dtype"`` :math:`\mathrm{fl}_d(1/q)`, with :math:`q = 1 - p` in double,
    :math:`d` the dtype and :math:`a` its accumulate type.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    acc = accumulate_dtype(dtype)
    q = 1.0 - p
    q_acc = torch.tensor(q, dtype=torch.float64).to(acc)
    acc_scale = torch.tensor(1.0, dtype=acc) / q_acc  # division in the accumulate type
    one_over_q = torch.tensor(1.0 / q, dtype=torch.float64)
    return {
        "cpu_recipe": float(acc_scale.to(dtype)),
        "acc_scale": float(acc_scale),
        "double_scale": float(one_over_q.to(acc)),
        "double_scale_in_dtype": float(one_over_q.to(dtype)),
    }


def candidate_outputs(x: torch.Tensor, p: float) -> dict[str, torch.Tensor]:
    r"""Each candidate formula's kept output for a CPU tensor ``x`` (see the module docstring).

    Products are formed in the dtype the candidate names and then rounded to ``x.dtype``, so
    that the double rounding of a float32 product to float16 happens as it does on a GPU.
    """
    if x.device.type != "cpu":
        raise ValueError("candidate_outputs evaluates on the CPU; pass a CPU tensor")
    dtype, acc = x.dtype, accumulate_dtype(x.dtype)
    s = candidate_scales(p, dtype)
    x_acc = x.to(acc)
    return {
        # noise (0/1 in dtype d) divided by q: fl_d(1/fl_a(q)); then x * noise, rounded to d
        "cpu_recipe": (x_acc * torch.tensor(s["cpu_recipe"], dtype=acc)).to(dtype),
        "acc_scale": (x_acc * torch.tensor(s["acc_scale"], dtype=acc)).to(dtype),
        "double_scale": (x_acc * torch.tensor(s["double_scale"], dtype=acc)).to(dtype),
        "double_scale_in_dtype": (x_acc * torch.tensor(s["double_scale_in_dtype"], dtype=acc)).to(
            dtype
        ),
    }


def count_mismatches(y: torch.Tensor, x: torch.Tensor, p: float) -> dict[str, int]:
    """For the kept elements of ``y`` (non-zero; ``x`` has no zeros), how many differ from
    each candidate's output, compared as values (``y`` and ``x`` on the CPU)."""
    kept = y != 0
    return {
        name: int((cand[kept] != y[kept]).sum()) for name, cand in candidate_outputs(x, p).items()
    }


def matching(counts: dict[str, int]) -> list[str]:
    """The candidates with no mismatch."""
    return sorted(name for name, n in counts.items() if n == 0)


# --------------------------------------------------------------------------- checks (CUDA)


def _positive(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """n values in [0.5, 4) on the CPU, exactly representable in ``dtype`` and never zero."""
    g = torch.Generator().manual_seed(seed)
    return (0.5 + 3.5 * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype)


def check_forward_scale(device: torch.device) -> dict[str, Any]:
    """F.dropout on CUDA (the fused kernel): kept output vs each candidate, per dtype and p."""
    out: dict[str, Any] = {}
    for name, dtype in DTYPES.items():
        x = _positive(1 << 16, dtype, SEED)
        rows = {}
        for p in P_VALUES:
            torch.cuda.manual_seed(SEED)
            y = F.dropout(x.to(device), p).cpu()
            counts = count_mismatches(y, x, p)
            rows[str(p)] = {"kept": int((y != 0).sum()), "mismatches": counts}
        out[name] = {
            "per_p": rows,
            "candidates_matching_every_p": sorted(
                set.intersection(*(set(matching(r["mismatches"])) for r in rows.values()))
            ),
        }
    return out


def check_forward_scale_grid(device: torch.device) -> dict[str, Any]:
    """float32 and float64: the kept value of a tensor of ones for every p = k/1000."""
    out: dict[str, Any] = {}
    for name in ("float32", "float64"):
        dtype = DTYPES[name]
        ones = torch.ones(256, dtype=dtype, device=device)
        equal = {k: 0 for k in ("cpu_recipe", "acc_scale", "double_scale")}
        checked = 0
        for p in P_GRID:
            torch.cuda.manual_seed(SEED)
            kept = float(F.dropout(ones, p).max())
            if kept == 0.0:
                continue
            checked += 1
            s = candidate_scales(p, dtype)
            for k in equal:
                equal[k] += kept == s[k]
        differ = sum(
            candidate_scales(p, dtype)["cpu_recipe"] != candidate_scales(p, dtype)["double_scale"]
            for p in P_GRID
        )
        out[name] = {
            "p_checked": checked,
            "p_where_kept_value_equals": equal,
            "p_where_cpu_recipe_and_double_scale_differ": int(differ),
        }
    return out


def check_backward_scale(device: torch.device) -> dict[str, Any]:
    """Gradient of F.dropout on CUDA with grad_output = 1: the backward's constant vs the
    forward's, for every p = k/1000 (float32) and a few p for the other dtypes."""
    out: dict[str, Any] = {}
    for name, dtype in DTYPES.items():
        grid = P_GRID if name == "float32" else P_VALUES
        equal = {k: 0 for k in ("cpu_recipe", "acc_scale", "double_scale", "forward_value")}
        checked = 0
        for p in grid:
            x = torch.ones(256, dtype=dtype, device=device, requires_grad=True)
            torch.cuda.manual_seed(SEED)
            y = F.dropout(x, p)
            y.backward(torch.ones_like(y))
            kept = y.detach() != 0
            if not bool(kept.any()):
                continue
            checked += 1
            grad = float(x.grad[kept][0])
            forward = float(y.detach()[kept][0])
            s = candidate_scales(p, dtype)
            for k in ("cpu_recipe", "acc_scale", "double_scale"):
                # the gradient is fl_d(fl_a(1 * 1 * scale)): round the candidate to the dtype
                equal[k] += grad == float(torch.tensor(s[k], dtype=torch.float64).to(dtype))
            equal["forward_value"] += grad == forward
        out[name] = {"p_checked": checked, "p_where_gradient_equals": equal}
    return out


def check_inplace(device: torch.device) -> dict[str, Any]:
    """F.dropout(..., inplace=True) on CUDA runs the composite recipe: kept output vs the
    candidates."""
    out: dict[str, Any] = {}
    for name, dtype in DTYPES.items():
        x = _positive(1 << 14, dtype, SEED + 1)
        rows = {}
        for p in (0.3, 0.42, 0.74):
            torch.cuda.manual_seed(SEED)
            y = F.dropout(x.to(device, copy=True), p, inplace=True).cpu()
            rows[str(p)] = count_mismatches(y, x, p)
        out[name] = {"mismatches": rows}
    return out


def _cuda_mask(n: int, dtype: torch.dtype, device: torch.device, p: float = 0.5) -> np.ndarray:
    torch.cuda.manual_seed(SEED)
    _, mask = torch.native_dropout(torch.ones(n, dtype=dtype, device=device), p, True)
    return mask.cpu().numpy()


def launch_grid(device: torch.device) -> dict[str, int]:
    """Dropout.cu's launch: blocks of 256 threads, at most SMs * (max threads per SM / 256)."""
    props = torch.cuda.get_device_properties(device)
    per_sm = props.max_threads_per_multi_processor // 256
    return {
        "multiprocessors": props.multi_processor_count,
        "max_threads_per_multiprocessor": props.max_threads_per_multi_processor,
        "max_blocks": props.multi_processor_count * per_sm,
        "max_threads": props.multi_processor_count * per_sm * 256,
    }


def check_masks(device: torch.device) -> dict[str, Any]:
    """Mask layout: which Philox draw each element takes depends on the launch configuration."""
    out: dict[str, Any] = {}
    grid = launch_grid(device)
    out["launch"] = grid
    k = 64

    # CPU and CUDA masks for the same torch.manual_seed
    n = 1 << 16
    torch.manual_seed(SEED)
    cpu = (F.dropout(torch.ones(n), 0.5) != 0).numpy()
    torch.manual_seed(SEED)
    cuda = (F.dropout(torch.ones(n, device=device), 0.5) != 0).cpu().numpy()
    out["cpu_vs_cuda_same_seed"] = {
        "n": n,
        "p": 0.5,
        "fraction_of_elements_equal": float((cpu == cuda).mean()),
        "identical": bool((cpu == cuda).all()),
    }

    # the first k mask entries for the same seed, at several sizes and dtypes
    sizes = {
        "float32 n=16384 (vector width 4)": (16384, torch.float32),
        "float32 n=16385 (odd: scalar kernel)": (16385, torch.float32),
        "float32 n=16386 (vector width 2)": (16386, torch.float32),
        "float32 n=2**22": (1 << 22, torch.float32),
        "float16 n=16384 (vector width 8)": (16384, torch.float16),
    }
    firsts = {name: _cuda_mask(n, dt, device)[:k] for name, (n, dt) in sizes.items()}
    base = firsts["float32 n=16384 (vector width 4)"]
    out["first_k_masks"] = {
        "k": k,
        "bits": {name: "".join("1" if b else "0" for b in m) for name, m in firsts.items()},
        "equal_to_float32_n16384": {name: int((m == base).sum()) for name, m in firsts.items()},
    }

    # layout predictions read from Dropout.cu; each compares two launches element by element
    threads = 4096
    vec4 = _cuda_mask(4 * threads, torch.float32, device)  # element 4t + j: thread t, draw 0, j
    scalar = _cuda_mask(threads - 1, torch.float32, device)  # element t: thread t, draw 0, x
    half8 = _cuda_mask(8 * threads, torch.float16, device)  # 8t + j (j < 4): thread t, draw 0, j
    big_n = 2 * grid["max_threads"] + 1  # odd and beyond one grid: the grid size enters
    big = _cuda_mask(big_n, torch.float32, device)
    t = np.arange(threads - 1)
    cap = grid["max_threads"]
    preds = {
        "scalar[t] == vec4[4t]": (scalar[t], vec4[4 * t]),
        "half_vec8[8t+j] == float32_vec4[4t+j], j<4": (
            half8.reshape(threads, 8)[:, :4].ravel(),
            vec4.reshape(threads, 4).ravel(),
        ),
        "scalar_big[t] == vec4[4t] (first grid stride)": (big[t], vec4[4 * t]),
        "scalar_big[max_threads + t] == vec4[4t+1] (second stride: thread t's y)": (
            big[cap + t],
            vec4[4 * t + 1],
        ),
        "scalar_big[max_threads + t] == scalar[t] (control: a different draw)": (
            big[cap + t],
            scalar[t],
        ),
    }
    out["layout_predictions"] = {
        name: {"positions": int(a.size), "equal": int((a == b).sum())}
        for name, (a, b) in preds.items()
    }
    out["layout_predictions_note"] = (
        "independent masks at p = 0.5 agree on about half the positions; a prediction holds "
        f"when equal == positions. max_threads = {cap} on this GPU: an element at index "
        ">= max_threads takes a draw that depends on the number of multiprocessors."
    )
    return out


CHECKS: dict[str, Callable[[torch.device], dict[str, Any]]] = {
    "forward_scale": check_forward_scale,
    "forward_scale_grid": check_forward_scale_grid,
    "backward_scale": check_backward_scale,
    "inplace": check_inplace,
    "masks": check_masks,
}


def run_checks(device: torch.device, names: list[str] | None = None) -> dict[str, Any]:
    """Run the named checks (all by default); an exception becomes an error entry."""
    results: dict[str, Any] = {}
    for name in names or list(CHECKS):
        start = time.perf_counter()
        try:
            results[name] = CHECKS[name](device)
        except Exception as exc:  # record it and continue with the other checks
            results[name] = {"error": repr(exc), "traceback": traceback.format_exc(limit=5)}
        results[name]["seconds"] = round(time.perf_counter() - start, 3)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cuda_facts",
        description="Measure chapter 6's statements about CUDA dropout; write JSON.",
    )
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.out.suffix != ".json":
        parser.error(f"--out must name a .json file, got {args.out}")
    if args.out.is_dir():
        parser.error(f"--out is a folder: {args.out}")
    if not args.out.parent.is_dir():
        parser.error(f"--out: folder {args.out.parent} does not exist")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "cuda_facts: no CUDA device is available (torch.cuda.is_available() is False); "
            "these checks need a GPU. Nothing was written.",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cuda")
    start = time.perf_counter()
    report = {
        "command": "python -m benchmarks.cuda_facts --out " + str(args.out),
        "device": torch.cuda.get_device_name(device),
        "capability": list(torch.cuda.get_device_capability(device)),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "checks": run_checks(device),
    }
    report["seconds"] = round(time.perf_counter() - start, 3)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} ({report['seconds']} s on {report['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
