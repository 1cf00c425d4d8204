"""The Library reference (book/api/) is generated from the library and covers all of it."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import api_pages  # noqa: E402


def test_committed_pages_are_what_the_generator_writes():
    """Fails when a module or a public name changed: run `python tools/api_pages.py`."""
    pages = api_pages.render()
    for name, text in pages.items():
        path = ROOT / "book" / "api" / name
        assert path.exists(), f"{path} missing: run python tools/api_pages.py"
        assert path.read_text() == text, f"{path} is stale: run python tools/api_pages.py"
    on_disk = {p.name for p in (ROOT / "book" / "api").glob("*.md")}
    assert on_disk == set(pages)


def test_every_public_module_and_name_is_on_a_page():
    text = "\n".join(api_pages.render().values())
    for module in api_pages.public_modules():
        assert f".. automodule:: {module}\n" in text, module
        for name in (n for n in api_pages.exported(module) if not n.startswith("_")):
            # Documented in its module's automodule/autodata, or linked from the package.
            assert name in text, f"{module}.{name}"


def test_every_page_is_in_the_table_of_contents():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    part = next(p for p in toc["parts"] if p["caption"] == "Library reference")
    chapter = part["chapters"][0]
    listed = [chapter["file"]] + [s["file"] for s in chapter.get("sections", [])]
    expected = ["book/api/index"] + [f"book/api/{stem}" for stem, *_ in api_pages.PAGES]
    assert listed == expected
