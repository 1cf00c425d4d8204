"""Static checks of the built HTML: every page present, offline-ready, executed without noise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ROOT, toc_pages

PAGES = toc_pages()


def page_html(html_root: Path, page: str) -> str:
    return (html_root / f"{page}.html").read_text()


@pytest.mark.parametrize("page", PAGES)
def test_every_toc_page_is_built(html_root, page):
    assert (html_root / f"{page}.html").exists()


@pytest.mark.parametrize("page", PAGES)
def test_no_page_loads_anything_from_the_network(html_root, page):
    html = page_html(html_root, page)
    remote = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
    # Links a reader may click (repository, launch buttons, cited URLs) are fine; what the page
    # loads by itself (scripts, styles, images, fonts) must be local.
    loaded = re.findall(r'<(?:script|img|iframe|source)[^>]+src="(https?://[^"]+)"', html)
    loaded += re.findall(
        r'<link[^>]+rel="(?:stylesheet|preload|icon)"[^>]+href="(https?://[^"]+)"', html
    )
    assert not loaded, loaded
    assert all("cdn" not in url for url in remote if "stylesheet" in url)


def test_mathjax_is_served_locally(html_root):
    html = page_html(html_root, "book/02-bernoulli-mask")
    scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', html)
    assert scripts == ["../_static/mathjax/tex-chtml.js"]
    assert (html_root / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000


@pytest.mark.parametrize("page", PAGES)
def test_no_warnings_or_unexpected_tracebacks_in_outputs(html_root, page):
    html = page_html(html_root, page)
    # Cell outputs only: the Library reference may name warnings in its text.
    outputs = [o.split('<div class="cell ', 1)[0] for o in html.split('class="cell_output')[1:]]
    # "UserWarning:" is how Python prints a warning; the bare name may appear in displayed
    # library source (``warnings.warn(..., UserWarning)``) without any warning being raised.
    for noise in ("DeprecationWarning", "UserWarning", "RuntimeWarning", "FutureWarning"):
        assert not any(f"{noise}:" in o for o in outputs), f"{page} shows a {noise}"
    # Tracebacks are allowed only in cells that teach an error (tagged raises-exception).
    tracebacks = html.count('class="output traceback')
    allowed = html.count("tag_raises-exception")
    assert tracebacks <= allowed, f"{page}: {tracebacks} tracebacks, {allowed} cells may raise"


def test_status_page_lists_every_chapter_as_executed(html_root):
    html = page_html(html_root, "book/status")
    chapters = [p.split("/")[-1] for p in PAGES if (ROOT / f"{p}.ipynb").exists()]
    assert chapters
    found = re.search(r'<table class="[^"]*\bexec-status\b[^"]*">(.*?)</table>', html, re.S)
    assert found, "no execution table: was the book executed?"
    table = found.group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]
    assert len(rows) == len(chapters), "one row per chapter, and not the status page itself"
    for chapter in chapters:
        row = next((r for r in rows if f"{chapter}.html" in r), None)
        assert row is not None, f"{chapter} missing from the status page"
        assert "<p>executed</p>" in row, row
    assert "status.html" not in table
    # No emoji: they render as empty boxes without an emoji font.
    assert not re.search("[\u2600-\u27bf\U0001f300-\U0001faff]", html)
    assert "torch" in html and "2.13.0" in html


def test_objects_inventory_lists_every_public_object(html_root):
    """The Library reference: every public function and class is in objects.inv and genindex."""
    import importlib
    import inspect
    import posixpath
    import sys

    from sphinx.util.inventory import InventoryFile

    sys.path.insert(0, str(ROOT / "tools"))
    import api_pages

    with open(html_root / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    names = {
        name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries
    }
    genindex = (html_root / "genindex.html").read_text()
    missing = []
    for module_name in api_pages.public_modules():
        assert module_name in names, module_name
        module = importlib.import_module(module_name)
        for name in api_pages.exported(module_name):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                canonical = f"{obj.__module__}.{obj.__qualname__}"
                if canonical not in names:
                    missing.append(canonical)
                elif f"#{canonical}" not in genindex:
                    missing.append(f"{canonical} (genindex)")
    assert not missing, missing


def test_every_citation_resolves_to_the_references_page(html_root):
    refs = page_html(html_root, "book/references")
    cited = set()
    for page in PAGES:
        cited |= set(
            re.findall(r'href="references\.html#id\d+"|href="#id\d+"', page_html(html_root, page))
        )
    assert cited, "no page cites anything"
    entries = re.findall(r'<div class="citation" id="(id\d+)"', refs)
    assert entries, "the references page lists no works"
    for link in cited:
        anchor = link.split("#")[1].rstrip('"')
        if "references.html" in link:
            assert anchor in entries, link
