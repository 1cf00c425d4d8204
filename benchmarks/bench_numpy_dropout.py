"""NumPy dropout forward against PyTorch's CPU dropout and against the random-number floor.

Targets (issue 2), float32, p = 0.5, medians of interleaved repeats, torch pinned to 1 thread:

- ``dropout`` forward <= 0.5 x ``torch.nn.functional.dropout`` time;
- ``dropout`` forward <= 1.5 x the time of merely drawing the random numbers,
  ``rng.random(n, dtype=np.float32, out=buf)``, for n >= 2**20;
- the saved mask takes at most 1 byte per element.

Run: ``python -m benchmarks numpy_dropout``.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks._timing import compare, pin_threads, print_table, write_results
from dropoutlib.numpy import dropout

SIZES = (2**16, 2**20, 2**24)
P = 0.5


def measure(n: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = np.ones(n, dtype=np.float32)
    buf = np.empty(n, dtype=np.float32)
    xt = torch.ones(n)
    times = compare(
        {
            "dropoutlib": lambda: dropout(x, P, rng=rng, return_mask=True),
            "rng_float32": lambda: rng.random(n, dtype=np.float32, out=buf),
            "torch": lambda: torch.nn.functional.dropout(xt, P),
        },
        repeats=repeats,
    )
    _, mask = dropout(x, P, rng=rng, return_mask=True)
    return {
        "n": n,
        "ns/elem dropoutlib": times["dropoutlib"] / n * 1e9,
        "ns/elem rng floor": times["rng_float32"] / n * 1e9,
        "ns/elem torch": times["torch"] / n * 1e9,
        "x torch (<=0.5)": times["dropoutlib"] / times["torch"],
        "x rng floor (<=1.5)": times["dropoutlib"] / times["rng_float32"],
        "mask bytes/elem (<=1)": mask.nbytes / n,
    }


def main() -> None:
    pin_threads(1)
    rows = [measure(n, repeats=25 if n < 2**24 else 9) for n in SIZES]
    print_table(rows, list(rows[0]))
    met = all(
        r["x torch (<=0.5)"] <= 0.5
        and r["mask bytes/elem (<=1)"] <= 1
        and (r["n"] < 2**20 or r["x rng floor (<=1.5)"] <= 1.5)
        for r in rows
    )
    print(f"targets met: {met}")
    write_results("numpy_dropout", rows, p=P, dtype="float32", targets_met=met)


if __name__ == "__main__":
    main()
