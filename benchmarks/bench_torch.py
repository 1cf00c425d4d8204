"""dropoutlib.torch drop-ins vs torch's own dropouts on CPU (target: ratio <= 1.05).

Both run the same ATen ops (empty_like, bernoulli_, div_, mul); the drop-in adds only Python
dispatch, so the ratio approaches 1 as the tensor grows and the RNG dominates. Also times the
NumPy emulation of torch's CPU stream (``dropoutlib.numpy.torch_rng.torch_dropout``), for
context. Threads pinned to 1. Run: ``python -m benchmarks torch``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import dropoutlib.torch as D
from benchmarks._timing import compare, pin_threads, print_table, write_results
from dropoutlib.numpy.torch_rng import TorchCPUGenerator, torch_dropout

SIZES = [2**12, 2**16, 2**20]


def _cases(n: int):
    x = torch.randn(n)
    xi = torch.randn(n)  # mutated by the in-place rows only
    x4 = torch.randn(n // 256, 16, 4, 4)
    xg = torch.randn(n, requires_grad=True)
    g = torch.ones(n)
    x_np, gen = x.numpy(), TorchCPUGenerator(0)

    def fwd_bwd(fn):
        return lambda: fn(xg, 0.5).backward(g)

    return {
        "dropout": (lambda: F.dropout(x, 0.5), lambda: D.dropout(x, 0.5)),
        "dropout inplace": (
            lambda: F.dropout(xi, 0.5, inplace=True),
            lambda: D.dropout(xi, 0.5, inplace=True),
        ),
        "dropout2d": (lambda: F.dropout2d(x4, 0.5), lambda: D.dropout2d(x4, 0.5)),
        "alpha_dropout": (
            lambda: F.alpha_dropout(x, 0.5, True),
            lambda: D.alpha_dropout(x, 0.5, True),
        ),
        "dropout fwd+bwd": (fwd_bwd(F.dropout), fwd_bwd(D.dropout)),
        "numpy emulation": (
            lambda: F.dropout(x, 0.5),
            lambda: torch_dropout(x_np, 0.5, generator=gen),
        ),
    }


def main() -> None:
    pin_threads(1)
    rows = []
    for n in SIZES:
        for name, (ref, ours) in _cases(n).items():
            times = compare({"torch": ref, "ours": ours}, repeats=21 if n < 2**20 else 11)
            rows.append(
                {
                    "case": name,
                    "n": n,
                    "torch_us": times["torch"] * 1e6,
                    "ours_us": times["ours"] * 1e6,
                    "ratio": times["ours"] / times["torch"],
                }
            )
    print_table(rows, ["case", "n", "torch_us", "ours_us", "ratio"])
    drop_in = [r["ratio"] for r in rows if r["case"] != "numpy emulation" and r["n"] >= 2**16]
    print(f"drop-ins, n >= 2**16: max ratio {max(drop_in):.3f} (target <= 1.05)")
    write_results("torch", rows, target="ratio <= 1.05 for the drop-ins", numpy=np.__version__)


if __name__ == "__main__":
    main()
