"""dropoutlib.torch drop-ins vs torch's own dropouts on CPU.

Targets: drop-in ÷ torch <= 1.10 for every layer and functional at 4096 elements (issue 15:
small tensors, where Python overhead shows), and <= 1.05 at 2**16 elements and more.

Both run the same ATen ops (empty_like, bernoulli_, div_, mul); the drop-in adds Python dispatch
(one binding call per op where torch makes one for the whole recipe), so the ratio approaches 1
as the tensor grows and the RNG dominates. At 4096 elements each sample times a batch of calls
(``BATCH``), candidates interleaved round by round; the table reports medians. Also times the
NumPy emulation of torch's CPU stream (``dropoutlib.numpy.torch_rng.torch_dropout``), for
context. Threads pinned to 1. Run: ``python -m benchmarks torch``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dropoutlib.torch as D
from benchmarks._timing import compare, pin_threads, print_table, write_results
from dropoutlib.numpy.torch_rng import TorchCPUGenerator, torch_dropout

SMALL = 2**12
SIZES = [2**16, 2**20]
BATCH = 20  # calls per timed sample at SMALL
ROUNDS = 151  # samples per candidate at SMALL

# Each layer with an input shape of SMALL elements that needs no warning.
LAYER_SHAPES = {
    "Dropout": (SMALL,),
    "Dropout1d": (16, 16, 16),
    "Dropout2d": (16, 16, 4, 4),
    "Dropout3d": (16, 16, 2, 2, 4),
    "AlphaDropout": (SMALL,),
    "FeatureAlphaDropout": (16, 16, 4, 4),
}
FUNCTIONALS = {
    "dropout": "Dropout",
    "dropout1d": "Dropout1d",
    "dropout2d": "Dropout2d",
    "dropout3d": "Dropout3d",
    "alpha_dropout": "AlphaDropout",
    "feature_alpha_dropout": "FeatureAlphaDropout",
}


def _batched(fn, k: int = BATCH):
    def run():
        for _ in range(k):
            fn()

    return run


def _small_cases():
    """Every functional and every layer at SMALL elements, in training (p = 0.5)."""
    cases = {}
    for fname, layer in FUNCTIONALS.items():
        x = torch.randn(LAYER_SHAPES[layer])
        ref, ours = getattr(F, fname), getattr(D, fname)
        cases[f"F.{fname}"] = (
            lambda ref=ref, x=x: ref(x, 0.5, True),
            lambda ours=ours, x=x: ours(x, 0.5, True),
        )
    for layer, shape in LAYER_SHAPES.items():
        x = torch.randn(shape)
        ref, ours = getattr(nn, layer)(0.5), getattr(D, layer)(0.5)
        cases[f"nn.{layer}"] = (lambda ref=ref, x=x: ref(x), lambda ours=ours, x=x: ours(x))
    xi = torch.randn(SMALL)
    cases["F.dropout inplace"] = (
        lambda: F.dropout(xi, 0.5, inplace=True),
        lambda: D.dropout(xi, 0.5, inplace=True),
    )
    xg, g = torch.randn(SMALL, requires_grad=True), torch.ones(SMALL)
    cases["F.dropout fwd+bwd"] = (
        lambda: F.dropout(xg, 0.5).backward(g),
        lambda: D.dropout(xg, 0.5).backward(g),
    )
    return cases


def _large_cases(n: int):
    x = torch.randn(n)
    xi = torch.randn(n)  # mutated by the in-place rows only
    x4 = torch.randn(n // 256, 16, 4, 4)
    xg = torch.randn(n, requires_grad=True)
    g = torch.ones(n)
    x_np, gen = x.numpy(), TorchCPUGenerator(0)

    def fwd_bwd(fn):
        return lambda: fn(xg, 0.5).backward(g)

    return {
        "F.dropout": (lambda: F.dropout(x, 0.5), lambda: D.dropout(x, 0.5)),
        "F.dropout inplace": (
            lambda: F.dropout(xi, 0.5, inplace=True),
            lambda: D.dropout(xi, 0.5, inplace=True),
        ),
        "F.dropout2d": (lambda: F.dropout2d(x4, 0.5), lambda: D.dropout2d(x4, 0.5)),
        "F.alpha_dropout": (
            lambda: F.alpha_dropout(x, 0.5, True),
            lambda: D.alpha_dropout(x, 0.5, True),
        ),
        "F.dropout fwd+bwd": (fwd_bwd(F.dropout), fwd_bwd(D.dropout)),
        "numpy emulation": (
            lambda: F.dropout(x, 0.5),
            lambda: torch_dropout(x_np, 0.5, generator=gen),
        ),
    }


def _row(name: str, n: int, times: dict[str, float], k: int = 1) -> dict:
    return {
        "case": name,
        "n": n,
        "torch_us": times["torch"] / k * 1e6,
        "ours_us": times["ours"] / k * 1e6,
        "ratio": times["ours"] / times["torch"],
    }


def main() -> None:
    pin_threads(1)
    warnings.simplefilter("error")  # no case may warn: a warning would dominate the timing
    rows = []
    for name, (ref, ours) in _small_cases().items():
        times = compare({"torch": _batched(ref), "ours": _batched(ours)}, repeats=ROUNDS)
        rows.append(_row(name, SMALL, times, BATCH))
    for n in SIZES:
        for name, (ref, ours) in _large_cases(n).items():
            times = compare({"torch": ref, "ours": ours}, repeats=21 if n < 2**20 else 11)
            rows.append(_row(name, n, times))
    print_table(rows, ["case", "n", "torch_us", "ours_us", "ratio"])
    small = [r["ratio"] for r in rows if r["n"] == SMALL]
    large = [r["ratio"] for r in rows if r["case"] != "numpy emulation" and r["n"] > SMALL]
    print(f"drop-ins, n = 4096: max ratio {max(small):.3f} (target <= 1.10)")
    print(f"drop-ins, n >= 2**16: max ratio {max(large):.3f} (target <= 1.05)")
    write_results(
        "torch",
        rows,
        target="ratio <= 1.10 at 4096 elements for every drop-in; <= 1.05 at n >= 2**16",
        small_batch=BATCH,
        small_rounds=ROUNDS,
        numpy=np.__version__,
    )


if __name__ == "__main__":
    main()
