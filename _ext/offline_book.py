"""Local Sphinx extension: keep the built book offline-clean and free of console errors.

Jupyter Book 1 always loads ``sphinx_thebe``, which injects a script defining ``THEBE_JS_URL``
(a CDN address) on every page, once per read of the environment, so pages can carry it twice and
the browser reports ``Identifier 'THEBE_JS_URL' has already been declared``. Live code (thebe)
is switched off in ``_config.yml`` (``launch_buttons.thebe: false``), so those scripts serve no
purpose: this extension drops them from every page.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _is_thebe(script: Any) -> bool:
    filename = getattr(script, "filename", "") or ""
    body = (getattr(script, "attributes", None) or {}).get("body", "")
    return "thebe" in filename or "THEBE_JS_URL" in body


def drop_thebe_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Remove the thebe configuration and loader scripts from a page's script list."""
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [s for s in scripts if not _is_thebe(s)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
