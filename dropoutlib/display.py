"""Show the library's own source code inside a chapter.

A chapter never copies an algorithm: it calls :func:`show_source` on the library object, so
the rendered book shows exactly the code that runs, and nbval fails when the two drift apart
(the source text is part of the cell's stored output).
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

__all__ = ["SourceCode", "show_source"]


class SourceCode:
    """The source of a Python object, displayed as a highlighted code block.

    Jupyter shows the ``text/markdown`` form (a fenced ``python`` block, highlighted by the
    book); the plain-text form is the source itself, which nbval compares.
    """

    def __init__(self, code: str, title: str) -> None:
        self.code = code
        self.title = title

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"

    def _repr_markdown_(self) -> str:
        return f"`{self.title}`\n\n```python\n{self.code}\n```\n"


def show_source(obj: Any, *, docstring: bool = True) -> SourceCode:
    """Return the source code of ``obj`` (a function, class or method) for display.

    Parameters
    ----------
    obj : object
        A library object with retrievable source.
    docstring : bool, default True
        If false, the docstring is removed so that only the code is shown (useful when the
        chapter has just derived the mathematics the docstring repeats).

    Returns
    -------
    SourceCode
        An object that Jupyter renders as a code block titled with the object's qualified name.
    """
    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    if not docstring and obj.__doc__:
        code = _strip_docstring(code)
    title = f"{obj.__module__}.{obj.__qualname__}"
    return SourceCode(code, title)


def _strip_docstring(code: str) -> str:
    """Remove the first triple-quoted string literal (the docstring) from ``code``."""
    import ast

    tree = ast.parse(code)
    node = tree.body[0]
    body = getattr(node, "body", None)
    if not body or not isinstance(body[0], ast.Expr) or not isinstance(body[0].value, ast.Constant):
        return code
    doc = body[0]
    lines = code.splitlines()
    kept = lines[: doc.lineno - 1] + lines[doc.end_lineno :]
    return "\n".join(kept)
