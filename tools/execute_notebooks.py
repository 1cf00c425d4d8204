"""Re-execute chapter notebooks in place, top to bottom, in a fresh kernel each.

Usage: ``python tools/execute_notebooks.py book/*.ipynb`` (or ``make execute``).

Committed outputs are the specification nbval checks, so authors refresh them with this
command after changing a chapter or the library. It also normalises what nbval and the
hygiene test look at: kernelspec ``python3`` and no per-run timing metadata.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def execute(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place and return the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(Path("book").glob("*.ipynb"))
    for path in paths:
        print(f"{path}: ", end="", flush=True)
        print(f"{execute(path):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
