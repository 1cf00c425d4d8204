"""Run chapters the way a reader does: a bare venv, ``pip install ".[book]"``, then nbclient.

Usage: ``python tools/check_packaging.py [CHAPTER-PREFIX ...]`` (``make test-packaging``; the
default chapters are 01 02 06 13). Needs only the standard library to start.

1. Create a fresh virtual environment in a temporary folder, without the system's or the
   repository's packages (no ``--system-site-packages``).
2. ``pip install "<repository>[book]" nbclient ipykernel``: a regular (not editable) install of
   the library with the ``book`` extra, resolved by pip as a reader's pip resolves it.
3. Check that every module any chapter imports is importable there (``triton`` may be missing:
   it is optional and chapter 14 says so), and that every ``dropoutlib`` module imports.
4. Copy the chosen chapters to an empty folder and execute them top to bottom with nbclient:
   no error (except in cells tagged ``raises-exception``), nothing on stderr, the setup cell
   silent (every import works, so it installs and prints nothing), and every text output that
   nbval compares equal to the committed one after the same sanitising as nbval.

Exits non-zero with a message naming the chapter and cell that failed; prints the install and
execution times.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
DEFAULT_CHAPTERS = ("01", "02", "06", "13")
PACKAGE_FILES = ("pyproject.toml", "README.md", "LICENSE", "dropoutlib")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
OPTIONAL_MODULES = {"triton"}  # chapter 14 runs its Triton section only when Triton is present


def chapter_imports(paths: list[Path]) -> set[str]:
    """Top-level module names imported by the code cells of ``paths`` (IPython magics skipped)."""
    names: set[str] = set()
    for path in paths:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            lines = "".join(cell["source"]).splitlines()
            source = "\n".join(ln for ln in lines if not ln.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """The regex replacements nbval applies (book/nbval_sanitize.cfg)."""
    config = configparser.ConfigParser()
    config.read(BOOK / "nbval_sanitize.cfg")
    return [(re.compile(config[s]["regex"]), config[s]["replace"]) for s in config.sections()]


def resolve_chapters(prefixes: list[str]) -> list[Path]:
    chapters = []
    for prefix in prefixes:
        found = sorted(BOOK.glob(f"{prefix}*.ipynb"))
        if len(found) != 1:
            raise SystemExit(f"chapter prefix {prefix!r} matches {len(found)} notebooks in book/")
        chapters.append(found[0])
    return chapters


# Runs inside the fresh venv: import checks, then nbclient over the copied chapters.
INNER = r"""
import importlib, json, pkgutil, re, sys, time
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

job = json.loads(sys.argv[1])
missing = []
for name in job["modules"]:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if name not in job["optional"]:
            missing.append(f"{name} ({exc})")
import dropoutlib
for info in pkgutil.walk_packages(dropoutlib.__path__, "dropoutlib."):
    if info.name.split(".")[1] in ("triton",) or info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        missing.append(f"{info.name} ({exc})")
if missing:
    sys.exit("not importable after pip install '.[book]': " + "; ".join(missing))
print("  library from", dropoutlib.__file__)

subs = [(re.compile(r), s) for r, s in job["sanitize"]]
def clean(text):
    for rx, s in subs:
        text = rx.sub(s, text)
    return text

def texts(cell):
    # Consecutive writes to one stream are joined (how they split into outputs is timing).
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            if out and out[-1][0] == o["name"]:
                out[-1] = (o["name"], out[-1][1] + clean(o["text"]))
            else:
                out.append((o["name"], clean(o["text"])))
        elif "text/plain" in o.get("data", {}):
            out.append(("text/plain", clean(o["data"]["text/plain"])))
        elif o["output_type"] == "error":
            out.append(("error", o["ename"]))
    return out

failures = []
for path in job["chapters"]:
    nb = nbformat.read(path, as_version=4)
    committed = [texts(c) for c in nb.cells if c.cell_type == "code"]
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": job["workdir"]}})
    try:
        client.execute()
    except CellExecutionError as exc:
        failures.append(f"{path}: {str(exc).splitlines()[-1] if str(exc) else exc}")
        continue
    seconds = time.perf_counter() - start
    code = [c for c in nb.cells if c.cell_type == "code"]
    name = path.rsplit("/", 1)[-1]
    if code[0].outputs:
        failures.append(f"{name}: the setup cell printed {texts(code[0])}")
    for i, (cell, before) in enumerate(zip(code, committed)):
        tags = cell.metadata.get("tags", [])
        after = texts(cell)
        if any(kind == "stderr" for kind, _ in after):
            failures.append(f"{name} code cell {i}: wrote to stderr: {after}")
        if "nbval-ignore-output" in tags or "nbval-skip" in tags:
            continue
        if after != before:
            failures.append(f"{name} code cell {i}: output differs from the committed one:\n"
                            f"    committed {before!r:.300}\n    fresh     {after!r:.300}")
    print(f"  {name}: executed in {seconds:.1f} s")
if failures:
    sys.exit("\n".join(failures))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", default=list(DEFAULT_CHAPTERS))
    parser.add_argument("--keep", action="store_true", help="keep the venv and print its path")
    args = parser.parse_args(argv)
    chapters = resolve_chapters(args.chapters)
    every_chapter = sorted(BOOK.glob("*.ipynb"))

    tmp = Path(tempfile.mkdtemp(prefix="dropoutlib-packaging-"))
    try:
        env_dir, work, source = tmp / "venv", tmp / "chapters", tmp / "source"
        work.mkdir()
        # Build from a copy of what the package is made of, so that setuptools' build/ folder
        # lands in the temporary folder and nothing else of the checkout can leak in.
        for name in PACKAGE_FILES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=IGNORED)
            else:
                source.mkdir(exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
        start = time.perf_counter()
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
        python = env_dir / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"{source}[book]", "nbclient", "ipykernel"], check=True)
        install = time.perf_counter() - start
        print(f"bare venv + pip install '.[book]' nbclient ipykernel: {install:.0f} s")

        for path in chapters:
            shutil.copy2(path, work / path.name)
        job = {
            "modules": sorted(chapter_imports(every_chapter)),
            "optional": sorted(OPTIONAL_MODULES),
            "sanitize": [(rx.pattern, s) for rx, s in sanitizers()],
            "chapters": [str(work / p.name) for p in chapters],
            "workdir": str(work),
        }
        start = time.perf_counter()
        # Run from the empty folder, so the repository's dropoutlib/ is not on sys.path.
        result = subprocess.run([str(python), "-c", INNER, json.dumps(job)], cwd=work)
        print(f"executed {len(chapters)} chapters in {time.perf_counter() - start:.0f} s")
        if result.returncode:
            print("packaging check FAILED (see above)", file=sys.stderr)
            return 1
        print("packaging check passed: a bare venv with the book extra runs the chapters")
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
