"""The one setup cell that opens every chapter, and a command that puts it in place.

Every chapter starts with the same short code cell. In the repository's environment it does
nothing; where an import fails (a fresh Colab or Binder kernel, a bare venv) it installs the
library with the chapter dependencies and prints one line. It is tagged ``remove-cell`` so the
HTML book does not show it, and ``nbval-ignore-output`` because what it prints depends on the
machine. Colab's notebook shows it, since Colab opens the ``.ipynb`` itself.

Usage: ``python tools/setup_cell.py book/*.ipynb`` rewrites the notebooks' first code cell
(outputs are not refreshed: re-execute the chapters afterwards). The notebook-rules test
imports :data:`SETUP_SOURCE` and checks every chapter against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

SETUP_TAGS = ["remove-cell", "nbval-ignore-output"]
SETUP_SOURCE = """\
# Setup (hidden in the book): installs what the chapters import if anything is missing.
import importlib.util, subprocess, sys

REPO = "git+https://github.com/dropout-from-scratch/dropout-from-scratch"
NEEDED = ("dropoutlib", "matplotlib", "mnist1d", "scipy", "sklearn", "torch")
if any(importlib.util.find_spec(name) is None for name in NEEDED):
    # Keep a torch that is already installed (Colab's); else take the pinned one.
    extra = "notebooks" if importlib.util.find_spec("torch") else "book"
    print(f"Installing dropoutlib[{extra}] from the book's repository ...")
    package = f"dropoutlib[{extra}] @ {REPO}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)"""

_OLD_GUARD_MARKS = ("# Setup", "import importlib", 'find_spec("dropoutlib")')


def _split_old_first_cell(source: str) -> str:
    """Return what an old first cell holds after its install guard (imports, seeds)."""
    paragraphs = source.split("\n\n")
    while paragraphs and any(mark in paragraphs[0] for mark in _OLD_GUARD_MARKS):
        paragraphs.pop(0)
    return "\n\n".join(paragraphs).strip("\n")


def put_setup_cell(path: Path) -> bool:
    """Make the first code cell of ``path`` the setup cell; return whether it changed."""
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    cell = nb.cells[first]
    if cell.source == SETUP_SOURCE and cell.metadata.get("tags") == SETUP_TAGS:
        return False
    if "remove-cell" in cell.metadata.get("tags", []) and cell.source.startswith("# Setup"):
        cell.source = SETUP_SOURCE  # an earlier version of the setup cell: replace it in place
    if cell.source != SETUP_SOURCE:
        rest = _split_old_first_cell(cell.source)
        cell.source = rest
        cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t not in SETUP_TAGS]
        if not cell.metadata["tags"]:
            del cell.metadata["tags"]
        setup = nbformat.v4.new_code_cell(SETUP_SOURCE, metadata={"tags": list(SETUP_TAGS)})
        nb.cells.insert(first, setup)
    else:
        cell.metadata["tags"] = list(SETUP_TAGS)
    nbformat.write(nb, path)
    return True


def main(argv: list[str]) -> int:
    for arg in argv or sorted(str(p) for p in Path("book").glob("*.ipynb")):
        print(f"{arg}: {'updated' if put_setup_cell(Path(arg)) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
