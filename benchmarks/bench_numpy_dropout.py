"""NumPy dropout against the random-number floor, the bits it draws, and the seeded mode.

Three tables, every ratio measured side by side in one process (interleaved rounds, medians):

1. ``dropout`` ÷ the floor ``rng.random(n, dtype=np.float32, out=buf)`` for n = 2**20 and
   2**24, p in {0.1, 0.3, 0.5}, float32: with the output allocated by the function, and with a
   caller-provided ``out=`` buffer. Issue-15 targets: <= 0.6 (stretch 0.5) allocated, <= 0.5
   with ``out=``. Also ``dropout`` ÷ ``torch.nn.functional.dropout`` (one torch thread).
2. Random bits drawn per element, **counted from the generator**: SFC64's state has a counter
   that advances by one per 64-bit output, and Philox's 256-bit counter advances by one per
   four outputs; beside the entropy H(p), the lower bound for any exact sampler. Target <= 8.1.
3. Seeded ÷ bool (``dropoutlib.numpy.memory``, forward + backward, Philox for the seeded mask)
   at the CPU sizes of ``benchmarks.bench_fast``. Target <= 2.0 at every size.

Run: ``python -m benchmarks numpy_dropout``. Never a timed assertion: the machine may be shared.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmarks._timing import compare, pin_threads, print_table, write_results
from dropoutlib.numpy import bernoulli_mask, dropout
from dropoutlib.numpy.memory import dropout_backward_saved, dropout_forward

SIZES = (2**20, 2**24)
PS = (0.1, 0.3, 0.5)
SEEDED_SIZES = tuple(1 << k for k in (16, 18, 20, 22, 24))  # benchmarks.bench_fast.CPU_SIZES


def entropy_bits(p: float) -> float:
    """H(p) = -p log2 p - (1-p) log2 (1-p): the fewest random bits per element on average."""
    return -sum(q * math.log2(q) for q in (p, 1 - p) if q > 0)


def measure_floor(n: int, p: float, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = np.ones(n, dtype=np.float32)
    buf = np.empty(n, dtype=np.float32)
    out = np.empty(n, dtype=np.float32)
    xt = torch.ones(n)
    times = compare(
        {
            "dropout": lambda: dropout(x, p, rng=rng),
            "dropout out=": lambda: dropout(x, p, rng=rng, out=out),
            "floor": lambda: rng.random(n, dtype=np.float32, out=buf),
            "torch": lambda: torch.nn.functional.dropout(xt, p),
        },
        repeats=repeats,
    )
    return {
        "n": n,
        "p": p,
        "ns/elem floor": times["floor"] / n * 1e9,
        "ns/elem dropout": times["dropout"] / n * 1e9,
        "x floor (<=0.6)": times["dropout"] / times["floor"],
        "out= x floor (<=0.5)": times["dropout out="] / times["floor"],
        "x torch": times["dropout"] / times["torch"],
    }


def _sfc64_outputs(bits: np.random.SFC64) -> int:
    return int(bits.state["state"]["state"][3])


def _philox_outputs(bits: np.random.Philox) -> int:
    state = bits.state
    counter = sum(int(c) << (64 * i) for i, c in enumerate(state["state"]["counter"]))
    return 4 * counter - (4 - int(state["buffer_pos"]))  # outputs handed out so far


def bits_per_element(p: float, n: int = 1 << 22) -> dict[str, float]:
    """Random bits per element of one ``bernoulli_mask`` call, from the generators' counters."""
    row: dict[str, float] = {"p": p, "H(p)": entropy_bits(p)}
    for name, bits, count in (
        ("SFC64", np.random.SFC64(3), _sfc64_outputs),
        ("Philox", np.random.Philox(3), _philox_outputs),
    ):
        before = count(bits)
        bernoulli_mask(n, p, rng=np.random.Generator(bits))
        row[f"bits/elem {name} (<=8.1)"] = 64 * (count(bits) - before) / n
    row["bits/elem 32-bit word"] = 32.0
    return row


def measure_seeded(n: int, repeats: int, p: float = 0.5) -> dict[str, float]:
    x = np.ones(n, dtype=np.float32)
    g = np.ones(n, dtype=np.float32)
    rng = np.random.default_rng(0)

    def run(storage: str) -> None:
        kwargs = {"seed": 1, "offset": 0} if storage == "seeded" else {"rng": rng}
        _, saved = dropout_forward(x, p, storage=storage, **kwargs)
        dropout_backward_saved(g, saved)

    times = compare({"bool": lambda: run("bool"), "seeded": lambda: run("seeded")}, repeats=repeats)
    return {
        "n": n,
        "ns/elem bool": times["bool"] / n * 1e9,
        "ns/elem seeded": times["seeded"] / n * 1e9,
        "seeded x bool (<=2)": times["seeded"] / times["bool"],
    }


def main() -> None:
    pin_threads(1)
    floor_rows = [measure_floor(n, p, repeats=31 if n < 2**24 else 11) for n in SIZES for p in PS]
    print_table(floor_rows, list(floor_rows[0]))
    bit_rows = [bits_per_element(p) for p in PS]
    print_table(bit_rows, list(bit_rows[0]))
    seeded_rows = [measure_seeded(n, repeats=31 if n < 2**22 else 11) for n in SEEDED_SIZES]
    print_table(seeded_rows, list(seeded_rows[0]))
    met = {
        "floor allocated <= 0.6": all(r["x floor (<=0.6)"] <= 0.6 for r in floor_rows),
        "floor out= <= 0.5": all(r["out= x floor (<=0.5)"] <= 0.5 for r in floor_rows),
        "bits <= 8.1": all(
            v <= 8.1 for r in bit_rows for k, v in r.items() if k.endswith("(<=8.1)")
        ),
        "seeded / bool <= 2": all(r["seeded x bool (<=2)"] <= 2.0 for r in seeded_rows),
    }
    print(f"targets met: {met}")
    write_results(
        "numpy_dropout",
        floor_rows,
        bits_rows=bit_rows,
        seeded_rows=seeded_rows,
        dtype="float32",
        targets_met=met,
    )


if __name__ == "__main__":
    main()
