"""Shared timing helpers: medians of repeated runs, interleaved so that load affects all rows.

The machines are shared and noisy, so benchmarks compare implementations **side by side in
one run**: :func:`compare` times every candidate in round-robin order and reports medians and
ratios. Absolute times are printed for context only.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

__all__ = ["RESULTS", "compare", "environment", "pin_threads", "print_table", "write_results"]


def pin_threads(n: int = 1) -> None:
    """Pin PyTorch (if imported) to ``n`` intra-op threads; NumPy's element-wise ops are serial."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a test dependency
        return
    torch.set_num_threads(n)


def compare(
    candidates: dict[str, Callable[[], Any]], *, repeats: int = 15, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in interleaved rounds."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def environment() -> dict[str, Any]:
    """What produced the numbers: machine, versions, thread settings."""
    import numpy

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "load_average_1min": os.getloadavg()[0],
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return "unknown"


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` (dicts) as an aligned text table with the given columns."""
    text = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for r in text:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_results(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write ``benchmarks/results/NAME.json`` with the rows and the environment."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "environment": environment(), "rows": rows, **extra}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path
