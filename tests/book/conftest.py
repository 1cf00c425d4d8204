"""Fixtures for checks of the built book (run after ``jupyter-book build``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"

sys.path.insert(0, str(ROOT / "tools"))
# One list of the pages for the tools and the tests (re-exported to test_html and test_browser).
from equation_overflow import toc_pages  # noqa: E402, F401


@pytest.fixture(scope="session")
def html_root() -> Path:
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run `make test-book` (or `make book`) first")
    return HTML
