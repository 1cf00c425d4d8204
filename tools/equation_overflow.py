"""Measure display equations that do not fit the column, on every page of the built book.

Usage: ``python tools/equation_overflow.py [PAGE ...]`` after ``make book`` (needs Chromium at
``$CHROMIUM_PATH``, default ``/usr/bin/chromium``; ``$BOOK_HTML`` points at another build's
``html`` folder; PAGE is a toc path such as ``book/17-structured-dropout``, default every page).
Prints, per page, how many display equations need more width than the text column at 1280 px
and at 390 px, and which ones. The browser test (``tests/book/test_browser.py``) uses the same
measurement and fails when a page has any at 1280 px or more than ``PHONE_EQUATION_BUDGET`` at
390 px.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}

# For every display equation: the width its formula and its number need, and the column's.
EQUATIONS_JS = """() => Array.from(document.querySelectorAll('div.math')).map(div => {
  const math = div.querySelector('mjx-container > mjx-math');
  const eqno = div.querySelector('.eqno');
  const label = eqno ? eqno.textContent.replace('#', '').trim() : '';
  const mathWidth = math ? math.getBoundingClientRect().width : div.scrollWidth;
  const eqnoWidth = eqno ? eqno.getBoundingClientRect().width : 0;
  return {id: label || div.id || '',
          need: Math.ceil(mathWidth + eqnoWidth), column: div.clientWidth,
          scrolls: getComputedStyle(div).overflowX === 'auto'};
})"""


def too_wide(equations: list[dict]) -> list[str]:
    """Describe the equations that need more than their column (1 px of rounding allowed)."""
    return [
        f"{e['id'] or '(unnumbered)'}: {e['need']} px in {e['column']}"
        for e in equations
        if e["need"] > e["column"] + 1
    ]


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return pages


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not (HTML / "index.html").exists():
        sys.exit("the book is not built: run `make book` first")
    handler = functools.partial(_Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = f"http://127.0.0.1:{httpd.server_address[1]}"
    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    totals = dict.fromkeys(WIDTHS, 0)
    print(f"{'page':<28} {'equations':>9} {'>1280':>6} {'>390':>5}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for page in sys.argv[1:] or toc_pages():
            found = {}
            for name, viewport in WIDTHS.items():
                context = browser.new_context(viewport=viewport)
                tab = context.new_page()
                tab.route(
                    "**/*",
                    lambda r: r.continue_() if r.request.url.startswith(server) else r.abort(),
                )
                tab.goto(f"{server}/{page}.html", wait_until="load")
                tab.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
                found[name] = tab.evaluate(EQUATIONS_JS)
                context.close()
            wide = {name: too_wide(eqs) for name, eqs in found.items()}
            for name in WIDTHS:
                totals[name] += len(wide[name])
            print(
                f"{page:<28} {len(found['desktop']):>9} {len(wide['desktop']):>6} "
                f"{len(wide['phone']):>5}"
            )
            for name in WIDTHS:
                for item in wide[name]:
                    print(f"    {name}: {item}")
        browser.close()
    httpd.shutdown()
    print(f"{'total':<28} {'':>9} {totals['desktop']:>6} {totals['phone']:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
