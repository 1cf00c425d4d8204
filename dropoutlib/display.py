r"""Show the library's own source code inside a chapter.

A chapter never copies an algorithm: it calls :func:`show_source` on the library object, so
the rendered book shows exactly the code that runs, and nbval fails when the two drift apart
(the source text is part of the cell's stored output).

The docstrings are numpy style with reStructuredText markup (``:math:`` roles, ``.. math::``
blocks, ``:func:`` cross-references). A reader should see mathematics, not markup, so the rich
(Markdown) form renders the docstring with :func:`rst_to_markdown` (math for MathJax, roles as
code, section titles in bold, parameters as a list) above the code, and shows the code without
the docstring.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from typing import Any

__all__ = ["SourceCode", "rst_to_markdown", "show_source"]


class SourceCode:
    """The source of a Python object, displayed as its rendered docstring and its code.

    Parameters
    ----------
    code : str
        The complete source, docstring included: the plain-text form, which nbval compares.
    title : str
        The object's qualified name, shown above the code.
    docstring : str or None, default None
        The docstring as written (reStructuredText); when given, the Markdown form renders it
        and shows ``body`` as the code.
    body : str or None, default None
        The source without the docstring (defaults to ``code``).

    Notes
    -----
    Jupyter and the book show the ``text/markdown`` form: the title, the rendered docstring as a
    quotation, and a fenced ``python`` block. The plain-text form (``repr``) is a comment line
    with the title followed by ``code``, the source exactly as it is in the library.
    """

    def __init__(
        self, code: str, title: str, docstring: str | None = None, body: str | None = None
    ) -> None:
        self.code = code
        self.title = title
        self.docstring = docstring
        self.body = code if body is None else body

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"

    def _repr_markdown_(self) -> str:
        parts = [f"`{self.title}`\n"]
        if self.docstring:
            rendered = rst_to_markdown(self.docstring)
            quoted = "\n".join(f"> {line}" if line else ">" for line in rendered.splitlines())
            parts.append(quoted + "\n")
        parts.append(f"```python\n{self.body}\n```\n")
        return "\n".join(parts)


def show_source(obj: Any, *, docstring: bool = True) -> SourceCode:
    """Return the source code of ``obj`` (a function, class or method) for display.

    Parameters
    ----------
    obj : object
        A library object with retrievable source.
    docstring : bool, default True
        If true, the docstring is shown rendered above the code; if false, it is left out, so
        that only the code is shown (useful when the chapter has just derived the mathematics
        the docstring repeats).

    Returns
    -------
    SourceCode
        An object that Jupyter renders as a code block titled with the object's qualified name.
    """
    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    title = f"{obj.__module__}.{obj.__qualname__}"
    doc, body = _split_docstring(code)
    if not docstring:
        return SourceCode(body, title)
    return SourceCode(code, title, docstring=doc, body=body)


def _split_docstring(code: str) -> tuple[str | None, str]:
    """Return ``(docstring, code without it)`` for the first definition in ``code``."""
    tree = ast.parse(code)
    node = tree.body[0]
    body = getattr(node, "body", None)
    if (
        not body
        or not isinstance(body[0], ast.Expr)
        or not isinstance(body[0].value, ast.Constant)
        or not isinstance(body[0].value.value, str)
    ):
        return None, code
    doc = body[0]
    lines = code.splitlines()
    kept = lines[: doc.lineno - 1] + lines[doc.end_lineno :]
    return inspect.cleandoc(doc.value.value), "\n".join(kept)


# --- reStructuredText (the subset the library's docstrings use) to Markdown ------------------

_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|data|attr|exc|obj|const):`([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_UNDERLINE = re.compile(r"^(-{3,}|={3,}|~{3,})$")
_TABLE_BORDER = re.compile(r"^=+( +=+)+$")
_FIELD = re.compile(r"^(\*{0,2}[A-Za-z_][\w, *]*)\s:\s(.*)$")
_FIELD_SECTIONS = {
    "parameters",
    "returns",
    "yields",
    "raises",
    "warns",
    "attributes",
    "other parameters",
    "receives",
}


def _role(match: re.Match[str]) -> str:
    text = match.group(2).strip()
    if "<" in text and text.endswith(">"):  # :func:`shown <target>`
        return f"`{text[: text.index('<')].strip()}`"
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    if text.startswith("!"):
        text = text[1:]
    return f"`{text}()`" if match.group(1) in ("func", "meth") else f"`{text}`"


def _inline(text: str) -> str:
    """Inline markup: math roles to ``$...$``, cross-reference roles and literals to code."""
    pieces = _LITERAL.split(text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:  # ``literal``
            out.append(f"`{piece}`")
            continue
        piece = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", piece)
        out.append(_ROLE.sub(_role, piece))
    return "".join(out)


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _take_block(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """Lines from ``start`` that are blank or indented deeper than ``indent``, dedented."""
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent_of(lines[end]) > indent):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return textwrap.dedent("\n".join(lines[start:end])).splitlines(), end


def _simple_table(lines: list[str], start: int) -> tuple[list[str], int]:
    """Convert the RST simple table whose top border is ``lines[start]`` to a pipe table."""
    border = lines[start].strip()
    indent = _indent_of(lines[start])
    starts = [m.start() for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    header_rows = 0
    i = start + 1
    while i < len(lines):
        line = lines[i][indent:] if len(lines[i]) > indent else lines[i].strip()
        if _TABLE_BORDER.match(line.strip()):
            i += 1
            if header_rows == 0 and i < len(lines) and lines[i].strip():
                header_rows = len(rows)
                continue
            break
        if line.strip():
            bounds = [*starts[1:], None]
            rows.append([line[a:b].strip() for a, b in zip(starts, bounds, strict=True)])
        i += 1
    if not rows:
        return [], i
    header = rows[0] if header_rows else [""] * len(starts)
    body = rows[header_rows:] if header_rows else rows

    def cells(row: list[str]) -> str:
        return "| " + " | ".join(_inline(c).replace("|", "\\|") for c in row) + " |"

    table = [cells(header), "|" + "---|" * len(starts), *[cells(r) for r in body]]
    return ["", *table, ""], i


def rst_to_markdown(doc: str) -> str:
    """Render a numpy-style reStructuredText docstring as Markdown with MathJax math.

    Handles what the library's docstrings use: ``:math:`` roles (to ``$...$``), ``.. math::``
    blocks (to ``$$...$$``), cross-reference roles such as ``:func:`` (to inline code),
    double-backquote literals, section titles underlined with ``-`` (to bold), the entries of
    Parameters/Returns/Attributes-like sections (to a list), simple tables (to pipe tables),
    ``>>>`` examples and ``::`` literal blocks (to fenced code). Other text passes through
    unchanged.

    Parameters
    ----------
    doc : str
        The docstring (indentation is cleaned with ``inspect.cleandoc``).

    Returns
    -------
    str
        Markdown text; it contains no reStructuredText role or directive that the library's
        docstrings use.

    Examples
    --------
    >>> print(rst_to_markdown("Keep :math:`1 - p`, see :func:`~dropoutlib.numpy.dropout`."))
    Keep $1 - p$, see `dropout()`.
    """
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = _indent_of(line)
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if _TABLE_BORDER.match(stripped):
            table, i = _simple_table(lines, i)
            out += table
            continue
        if stripped.startswith(".. math::"):
            first = stripped[len(".. math::") :].strip()
            block, i = _take_block(lines, i + 1, indent)
            body = [ln for ln in block if not ln.strip().startswith(":")]  # :label: etc.
            math = "\n".join(([first] if first else []) + body).strip("\n")
            out += ["", "$$", math, "$$", ""]
            continue
        if stripped and _UNDERLINE.match(nxt) and len(nxt) >= len(stripped) and indent == 0:
            section = stripped.lower()
            out += ["", f"**{stripped}**", ""]
            i += 2
            continue
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][indent:])
                i += 1
            out += ["", "```python", *block, "```", ""]
            continue
        if section in _FIELD_SECTIONS and indent == 0 and stripped:
            field = _FIELD.match(stripped)
            desc, i = _take_block(lines, i + 1, 0)
            if field:
                name, kind = field.groups()
                head = f"- `{name.strip()}` ({_inline(kind.strip())})"
            else:  # "Returns" entries may be a bare type
                head = f"- {_inline(stripped)}"
            rendered = rst_to_markdown("\n".join(desc)) if desc else ""
            first, _, rest = rendered.partition("\n\n")
            if first and "$$" not in first and "```" not in first:
                out.append(f"{head}: {' '.join(first.splitlines())}")
            else:
                out.append(head)
                rest = rendered
            out += [f"  {ln}" if ln else "" for ln in rest.splitlines()]
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            intro = stripped[:-1] if not stripped[:-2].endswith(" ") else stripped[:-2].rstrip()
            out.append(_inline(" " * indent + intro) if intro else "")
            block, i = _take_block(lines, i + 1, indent)
            out += ["", "```", *block, "```", ""]
            continue
        out.append(_inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
