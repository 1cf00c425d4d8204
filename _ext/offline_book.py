"""Local Sphinx extension: keep the built book offline-clean and free of console errors.

Jupyter Book 1 always loads ``sphinx_thebe``, which injects a script defining ``THEBE_JS_URL``
(a CDN address) on every page, once per read of the environment, so pages can carry it twice and
the browser reports ``Identifier 'THEBE_JS_URL' has already been declared``. Live code (thebe)
is switched off in ``_config.yml`` (``launch_buttons.thebe: false``), so those scripts serve no
purpose: this extension drops them from every page.

The status page's table (``{exec-status}``) lists every executed chapter in three columns
(chapter, run time, status in words): myst-nb's ``nb-exec-table`` has five columns that a
phone cuts off, marks status with emoji that render as empty boxes without an emoji font, and
lists the status page itself.

The Library reference (``book/api/``) documents every object of ``dropoutlib`` once, in the
module that defines it (``dropoutlib.numpy.functional.dropout``). Readers import many of them
from a package (``from dropoutlib.numpy import dropout``), so a cross-reference to that path
(``{py:func}`dropoutlib.numpy.dropout```) is resolved here to the documented object.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective


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


def _lookup(dotted: str) -> Any:
    """Import ``dotted`` (a module, or an attribute path inside one); raise if it is not there."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _documented_name(env: BuildEnvironment, target: str) -> str | None:
    """The documented name of the dropoutlib object that ``target`` names, if there is one."""
    if not target.startswith("dropoutlib."):
        return None
    try:
        obj = _lookup(target)
    except (ImportError, AttributeError):
        return None
    objects = env.get_domain("py").objects
    canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if canonical in objects:
        return canonical
    # A constant re-exported by a package: the documented name with the same last part and the
    # very same object.
    last = target.rsplit(".", 1)[-1]
    for name in objects:
        if name.startswith("dropoutlib.") and name.rsplit(".", 1)[-1] == last:
            try:
                if _lookup(name) is obj:
                    return name
            except (ImportError, AttributeError):
                continue
    return None


def resolve_reexports(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    """Resolve ``dropoutlib.<package>.<name>`` to where ``name`` is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    candidates = [target]
    if node.get("py:module") and not target.startswith("dropoutlib."):
        candidates.append(f"{node['py:module']}.{target}")
    for candidate in candidates:
        name = _documented_name(env, candidate)
        if name and name != target:
            return env.get_domain("py").resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            )
    return None


def _whole_attribute_docstring(self: Any) -> list[str]:
    """Napoleon's attribute parser, minus the Google-style inline type (see below)."""
    lines = self._dedent(self._consume_to_end())
    return self._format_field("", "", self.__class__(lines, self._config).lines())


def keep_attribute_docstrings_whole() -> None:
    """Stop napoleon from reading a constant's first sentence as its type.

    For data, attributes and properties napoleon parses the first line Google-style as
    ``type: description``, so ``#: Bytes of the uniform word of an element: one level each``
    makes "Bytes of the uniform word of an element" a (broken) type reference, which the
    nitpicky build reports. The library's docstrings are numpy style and never give such an
    inline type (types come from annotations), so the whole docstring is the description.
    """
    from sphinx.ext.napoleon import docstring

    if hasattr(docstring.GoogleDocstring, "_parse_attribute_docstring"):
        docstring.GoogleDocstring._parse_attribute_docstring = _whole_attribute_docstring


def drop_type_docstrings(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """A constant without a ``#:`` comment shows no docstring, not its type's (``dict``'s)."""
    if what not in ("data", "attribute") or not lines:
        return
    type_doc = type(obj).__doc__
    if type_doc and lines[0].strip() == inspect.cleandoc(type_doc).splitlines()[0].strip():
        lines.clear()


class ExecStatusNode(nodes.General, nodes.Element):
    """Placeholder for the execution-status table, filled in once every chapter is read."""


class ExecStatusDirective(SphinxDirective):
    """``{exec-status}``: a table of the executed notebooks of this build (not this page)."""

    def run(self) -> list[nodes.Node]:
        from myst_nb.ext.execution_tables import METADATA_KEY
        from myst_nb.sphinx_ import NbMetadataCollector

        # The same flag as nb-exec-table: myst-nb re-reads this page when a chapter changes.
        NbMetadataCollector.set_doc_data(self.env, self.env.docname, METADATA_KEY, True)
        return [ExecStatusNode()]


class ExecStatusTransform(SphinxPostTransform):
    """Replace the placeholder with chapter | run time (s) | status."""

    default_priority = 8  # before the reference resolvers, so the chapter links resolve

    def run(self, **kwargs: Any) -> None:
        from myst_nb.sphinx_ import NbMetadataCollector

        data = NbMetadataCollector.get_doc_data(self.env)
        for node in list(self.document.findall(ExecStatusNode)):
            rows = []
            for docname in sorted(data):
                exec_data = data[docname].get("exec_data")
                if not exec_data or docname == self.env.docname:
                    continue
                runtime = exec_data.get("runtime")
                rows.append(
                    (
                        docname,
                        "-" if runtime is None else f"{runtime:.1f}",
                        "executed" if exec_data.get("succeeded") is True else "FAILED",
                    )
                )
            node.replace_self(self._table(rows))

    def _table(self, rows: list[tuple[str, str, str]]) -> nodes.table:
        table = nodes.table(classes=["colwidths-auto", "exec-status"])
        group = nodes.tgroup(cols=3)
        table += group
        for _ in range(3):
            group += nodes.colspec(colwidth=1)
        head, body = nodes.thead(), nodes.tbody()
        group += [head, body]
        head += self._row(["Chapter", "Run time (s)", "Status"])
        for docname, runtime, status in rows:
            link = pending_xref(
                refdoc=self.env.docname,
                reftarget="/" + docname,
                reftype="doc",
                refdomain="std",
                refexplicit=False,
                refwarn=True,
            )
            link += nodes.inline(text=docname)
            head_cell = nodes.paragraph()
            head_cell += link
            body += self._row([head_cell, runtime, status])
        return table

    @staticmethod
    def _row(cells: list[Any]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            para = cell if isinstance(cell, nodes.paragraph) else nodes.paragraph(text=cell)
            row += nodes.entry("", para)
        return row


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(ExecStatusNode)
    app.add_directive("exec-status", ExecStatusDirective)
    app.add_post_transform(ExecStatusTransform)
    app.connect("autodoc-process-docstring", drop_type_docstrings, priority=400)
    keep_attribute_docstrings_whole()
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    app.connect("missing-reference", resolve_reexports)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
