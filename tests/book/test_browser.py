"""Every page of the built book in a real browser (Debian's Chromium driven by Playwright).

For each page of the table of contents: HTTP 200, no console or page errors, no request leaving
localhost (the book must read fully offline), math typeset by the local MathJax with no raw TeX
left in the text, every image loaded and described, code cells with outputs on chapter pages,
and no horizontal overflow at a phone width. Display equations are measured on every page at
1280 px and 390 px: none may be wider than the column at 1280 px; at 390 px a page may have at
most PHONE_EQUATION_BUDGET that scroll (sideways, visibly). One search field, a favicon and the
licences in the footer. Internal links and anchors are checked over the whole site. Full-page
screenshots of a few pages (desktop and phone widths) are saved under ``_build/screenshots/``
for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import ROOT, toc_pages

sys.path.insert(0, str(ROOT / "tools"))
from equation_overflow import EQUATIONS_JS, too_wide

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SCREENSHOTS = ROOT / "_build" / "screenshots"
PAGES = toc_pages()
CHAPTERS = [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()]

# Text that betrays untypeset math (outside code blocks, which may legitimately contain TeX).
RAW_TEX = re.compile(r"\\frac|\\mathbb|\\operatorname|\$\$|\\\[|\\\(|\\begin\{")

VISIBLE_TEXT_JS = """() => {
  const clone = document.querySelector('main, article, body').cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, mjx-container, script, style, .cell_input')
       .forEach(e => e.remove());
  return clone.textContent;
}"""

OVERFLOW_JS = """(width) => {
  const scrollable = el => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (['auto', 'scroll', 'hidden'].includes(s.overflowX) && e !== document.body
          && e !== document.documentElement) return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.querySelectorAll('main *, article *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1 && !scrollable(el)) {
      out.push(el.tagName.toLowerCase() + '.' + (el.className || '').toString().slice(0, 60)
               + ' right=' + Math.round(r.right));
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, offenders: out.slice(0, 10)};
}"""


# At 390 px, a page may have this many display equations wider than the column (they scroll).
# Budget for the chapters' authors: break long equations with aligned/multline to stay within.
# `python tools/equation_overflow.py` prints the counts of every page at both widths.
PHONE_EQUATION_BUDGET = 3


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(html_root: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(html_root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no browser at {CHROMIUM}: point CHROMIUM_PATH at an installed Chromium or Chrome "
            "(make test CHROMIUM_PATH=/path/to/chromium), install Debian's chromium with apt, "
            "or skip the browser tests (make test BROWSER=0); never `playwright install`"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageVisit:
    """Load one page with every non-local request aborted, recording what went wrong."""

    def __init__(self, browser, server: str, page: str, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.external: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._route(server))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.response = self.page.goto(f"{server}/{page}.html", wait_until="load")
        # Wait for MathJax to finish typesetting (it is loaded with `defer`).
        self.page.wait_for_function(
            "() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)"
        )
        self.page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")

    def _route(self, server: str):
        def handle(route) -> None:
            url = route.request.url
            if url.startswith(server) or url.startswith("data:"):
                route.continue_()
            else:
                self.external.append(url)
                route.abort()

        return handle

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"console error: {msg.text}")

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def visits(browser, server) -> Iterator[dict[str, PageVisit]]:
    opened = {page: PageVisit(browser, server, page, DESKTOP) for page in PAGES}
    yield opened
    for visit in opened.values():
        visit.close()


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_errors_or_network(visits, page):
    visit = visits[page]
    assert visit.response is not None and visit.response.status == 200
    assert not visit.external, f"requests left localhost: {visit.external}"
    assert not visit.errors, visit.errors


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(visits, page, html_root):
    visit = visits[page]
    source = (html_root / f"{page}.html").read_text()
    has_math = 'class="math' in source or "\\(" in source
    rendered = visit.page.locator("mjx-container").count()
    if has_math:
        assert rendered > 0, "the page has math but MathJax rendered none"
    text = visit.page.evaluate(VISIBLE_TEXT_JS)
    raw = RAW_TEX.findall(text)
    assert not raw, f"untypeset TeX in the page text: {raw[:5]}"


@pytest.mark.parametrize("page", PAGES)
def test_images_load_and_are_described(visits, page):
    images = visits[page].page.evaluate(
        """() => Array.from(document.querySelectorAll('main img, article img')).map(img => ({
             src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
             alt: img.getAttribute('alt') || '',
             caption: !!img.closest('figure')?.querySelector('figcaption')}))"""
    )
    for img in images:
        assert img["loaded"], f"image did not load: {img['src']}"
        described = img["caption"] or (img["alt"] and not img["alt"].endswith((".png", ".svg")))
        assert described, f"image without caption or alt text: {img['src']}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_shows_code_and_outputs(visits, page):
    p = visits[page].page
    assert p.locator("div.cell").count() > 0, "no code cells rendered"
    assert p.locator("div.cell_output").count() > 0, "no outputs rendered: was it executed?"


@pytest.mark.parametrize("page", PAGES)
def test_nothing_overflows_at_phone_width(browser, server, page):
    visit = PageVisit(browser, server, page, PHONE)
    try:
        result = visit.page.evaluate(OVERFLOW_JS, PHONE["width"])
    finally:
        visit.close()
    assert result["scrollWidth"] <= PHONE["width"] + 1, result
    assert not result["offenders"], result


@pytest.mark.parametrize("page", PAGES)
def test_display_equations_fit_the_column_at_desktop_width(visits, page):
    wide = too_wide(visits[page].page.evaluate(EQUATIONS_JS))
    assert not wide, f"{len(wide)} display equations wider than the column at 1280 px: {wide}"


@pytest.mark.parametrize("page", PAGES)
def test_few_display_equations_scroll_at_phone_width(browser, server, page):
    visit = PageVisit(browser, server, page, PHONE)
    try:
        equations = visit.page.evaluate(EQUATIONS_JS)
    finally:
        visit.close()
    assert all(e["scrolls"] for e in equations), "display math must scroll sideways (book.css)"
    wide = too_wide(equations)
    assert len(wide) <= PHONE_EQUATION_BUDGET, (
        f"{len(wide)} display equations scroll at 390 px (budget {PHONE_EQUATION_BUDGET}): {wide}"
    )


def test_phone_column_width_is_what_the_figure_style_assumes(browser, server):
    """dropoutlib.plotting sizes fonts for a phone column of PHONE_COLUMN_PX CSS pixels."""
    from dropoutlib.plotting import PHONE_COLUMN_PX

    visit = PageVisit(browser, server, CHAPTERS[0], PHONE)
    try:
        width = visit.page.evaluate(
            "() => document.querySelector('article.bd-article section > p').clientWidth"
        )
    finally:
        visit.close()
    assert abs(width - PHONE_COLUMN_PX) <= 16, width


def test_one_search_field_favicon_and_licences(visits):
    page = visits[CHAPTERS[0]].page
    visible = page.evaluate(
        """() => Array.from(document.querySelectorAll('.search-button-field'))
               .filter(e => e.offsetParent !== null).length"""
    )
    assert visible == 1, f"{visible} search fields visible at 1280 px"
    header = page.evaluate(
        "() => { const h = document.querySelector('.bd-header');"
        " return h ? h.getBoundingClientRect().height : 0; }"
    )
    assert header == 0
    icon = page.evaluate("() => document.querySelector('link[rel=icon]')?.href || ''")
    assert icon.endswith("favicon.png"), icon
    footer = page.evaluate("() => document.querySelector('.extra_footer').innerText")
    assert "MIT license" in footer and "CC BY 4.0" in footer, footer


def test_screenshots_for_review(browser, server):
    """Full-page screenshots of a few pages (desktop and phone) for a person to look at."""
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    chosen = [PAGES[0], *CHAPTERS[:2], "book/api/numpy", "book/status"]
    for page in [p for p in chosen if p in PAGES]:
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            visit = PageVisit(browser, server, page, viewport)
            try:
                path = SCREENSHOTS / f"{page.split('/')[-1]}-{name}.png"
                visit.page.screenshot(path=str(path), full_page=True)
            finally:
                visit.close()
            assert path.stat().st_size > 10_000


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"])


def test_internal_links_and_anchors_resolve(server, html_root):
    """Every internal link of every built page returns 200 and every #anchor exists."""
    parsed: dict[str, _Links] = {}

    def parse(path: Path) -> _Links:
        key = str(path)
        if key not in parsed:
            links = _Links()
            links.feed(path.read_text())
            parsed[key] = links
        return parsed[key]

    broken = []
    for page in PAGES:
        page_path = html_root / f"{page}.html"
        for href in parse(page_path).hrefs:
            url = urllib.parse.urlparse(href)
            if url.scheme or href.startswith(("mailto:", "javascript:")):
                continue
            target = (
                (page_path.parent / urllib.parse.unquote(url.path)).resolve()
                if url.path
                else page_path
            )
            try:
                urllib.request.urlopen(f"{server}/{target.relative_to(html_root)}")
            except (urllib.error.HTTPError, ValueError) as exc:
                broken.append(f"{page}: {href} ({exc})")
                continue
            if url.fragment and target.suffix == ".html" and url.fragment not in parse(target).ids:
                broken.append(f"{page}: {href} (no element with id {url.fragment!r})")
    assert not broken, broken[:20]
