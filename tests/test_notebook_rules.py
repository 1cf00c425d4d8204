"""The notebook rules of DESIGN.md, enforced on every chapter (see CONTRIBUTING.md).

nbval compares outputs; these tests check what nbval cannot: that the committed outputs come
from a clean top-to-bottom run in the standard kernel, that nothing leaks to stderr, that no
error is stored except where a cell is meant to raise, that randomness is seeded up front and
that every chapter is in the table of contents.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from setup_cell import SETUP_SOURCE, SETUP_TAGS

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
MACHINE_TEXT = [
    (re.compile(r"/(tmp|root|home|work)/[^\s'\"]+"), "a machine-specific path"),
    (re.compile(r" at 0x[0-9a-fA-F]{6,}"), "a memory address"),
]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return files


def code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def text_of(output: dict) -> str:
    parts = ["".join(output.get("text", ""))]
    for key in ("text/plain", "text/html", "text/markdown"):
        parts.append("".join(output.get("data", {}).get(key, "")))
    return "\n".join(parts)


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks found in book/"


def test_every_toc_entry_exists_and_every_chapter_is_listed():
    listed = toc_files()
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not listed in _toc.yml"
    assert len(listed) == len(set(listed)), "a page is listed twice in _toc.yml"


def test_chapter_files_are_numbered_in_toc_order():
    chapters = [f for f in toc_files() if re.fullmatch(r"book/\d\d-[a-z0-9-]+", f)]
    assert chapters == sorted(chapters)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
class TestChapter:
    def test_kernelspec_is_python3(self, path):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3"

    def test_committed_from_a_clean_top_to_bottom_run(self, path):
        counts = [c["execution_count"] for c in code_cells(path)]
        assert counts == list(range(1, len(counts) + 1)), counts

    def test_no_stored_errors_except_cells_meant_to_raise(self, path):
        for i, cell in enumerate(code_cells(path), 1):
            tags = cell.get("metadata", {}).get("tags", [])
            errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
            if "raises-exception" in tags:
                assert errors, f"cell {i} is tagged raises-exception but raised nothing"
            else:
                assert not errors, f"cell {i} stored {errors[0]['ename']}"

    def test_nothing_on_stderr(self, path):
        for i, cell in enumerate(code_cells(path), 1):
            for out in cell["outputs"]:
                is_stderr = out["output_type"] == "stream" and out["name"] == "stderr"
                assert not is_stderr, f"cell {i} wrote to stderr: {''.join(out['text'])[:200]}"

    def test_opens_with_the_one_setup_cell_hidden_in_the_book(self, path):
        first = code_cells(path)[0]
        assert "".join(first["source"]) == SETUP_SOURCE, (
            "the first code cell must be tools/setup_cell.py's SETUP_SOURCE, identical in every "
            "chapter: run `python tools/setup_cell.py book/*.ipynb`"
        )
        assert first.get("metadata", {}).get("tags") == SETUP_TAGS

    def test_second_code_cell_seeds_every_generator(self, path):
        second = "".join(code_cells(path)[1]["source"])
        assert re.search(r"^SEED = \d+", second, flags=re.M), "the second code cell sets SEED"
        assert "default_rng(SEED)" in second or "manual_seed(SEED)" in second

    def test_code_fits_the_column(self, path):
        for i, cell in enumerate(code_cells(path), 1):
            for line in "".join(cell["source"]).splitlines():
                assert len(line) <= 88, f"cell {i} has a line of {len(line)} > 88 characters"

    def test_code_is_formatted_like_the_library(self, path):
        run = subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--check", "--line-length", "88", str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert run.returncode == 0, f"run `ruff format --line-length 88 {path.name}`"

    def test_no_global_numpy_random_state(self, path):
        for i, cell in enumerate(code_cells(path), 1):
            src = "".join(cell["source"])
            assert not re.search(
                r"np\.random\.(seed|rand|randn|randint|normal|uniform|choice)\(", src
            ), f"cell {i} uses NumPy's global random state; pass a Generator instead"

    def test_every_figure_has_a_caption_and_a_name(self, path):
        for i, cell in enumerate(code_cells(path), 1):
            if any("image/png" in out.get("data", {}) for out in cell["outputs"]):
                figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
                missing = [key for key in ("caption", "name") if not figure.get(key)]
                assert not missing, (
                    f"cell {i} draws a figure without a {' or a '.join(missing)}: set the cell"
                    ' metadata {"mystnb": {"figure": {"caption": "what it shows, and what'
                    ' any band or error bar is", "name": "fig-..."}}} (alt text under'
                    ' "image" may be added)'
                )
                assert figure["name"].startswith("fig-"), (
                    f"cell {i}: figure name {figure['name']!r} must start with 'fig-'"
                )

    def test_outputs_hold_no_machine_specific_text(self, path):
        for i, cell in enumerate(code_cells(path), 1):
            for out in cell["outputs"]:
                for rx, what in MACHINE_TEXT:
                    match = rx.search(text_of(out))
                    assert not match, f"cell {i} output holds {what}: {match.group(0)[:60]}"

    def test_has_title_objectives_exercises_and_citations(self, path):
        nb = json.loads(path.read_text())
        md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert re.match(r"# \S", md), "a chapter starts with one '# Title'"
        assert len(re.findall(r"^# ", md, flags=re.M)) == 1, "exactly one top-level heading"
        assert md.count("```{exercise}") + md.count(":::{exercise}") >= 3, "at least 3 exercises"
        assert md.count("{solution}") >= 3, "solutions for the exercises"
        assert md.count(":class: dropdown") >= md.count("{solution}"), "solutions are folded"
        assert "{cite" in md, "at least one citation"
