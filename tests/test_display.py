"""Tests of dropoutlib.display: chapters show the library's own code, docstrings rendered."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import dropoutlib
from dropoutlib.display import SourceCode, rst_to_markdown, show_source
from dropoutlib.numpy import dropout, dropout_backward

# What a reader must never see in a rendered docstring: RST roles and directives.
RST_MARKUP = re.compile(r":(math|func|class|meth|mod|data|attr|exc|obj):`|^\s*\.\. \w+::", re.M)


def library_objects() -> list[tuple[str, object]]:
    """Every public function and class of dropoutlib that has a docstring (Triton excluded)."""
    found = {}
    for info in pkgutil.walk_packages(dropoutlib.__path__, "dropoutlib."):
        parts = info.name.split(".")
        if "triton" in parts or "__main__" in parts or any(p.startswith("_") for p in parts):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__doc__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.items())


OBJECTS = library_objects()


def prose(md: str) -> str:
    """Markdown without fenced code blocks and code spans (where markup may be quoted)."""
    md = re.sub(r"```.*?```", "", md, flags=re.S)
    return re.sub(r"`[^`]*`", "", md)


def test_plain_text_is_the_library_source_unchanged():
    """nbval compares text/plain: it stays the exact source, docstring included."""
    shown = show_source(dropout)
    assert shown.code == inspect.getsource(dropout).rstrip()
    assert shown.title == "dropoutlib.numpy.functional.dropout"
    assert repr(shown) == f"# {shown.title}\n{inspect.getsource(dropout).rstrip()}"


def test_markdown_renders_the_docstring_and_shows_code_without_it():
    md = show_source(dropout)._repr_markdown_()
    code = md[md.index("```python\ndef dropout(") :]
    assert code.count("```") == 2 and '"""' not in code
    assert "return (y, mask) if return_mask else y" in code
    doc = md[: md.index("```python\ndef dropout(")]
    assert "> Apply dropout to `x`." in doc
    assert "> **Parameters**" in doc
    assert "$m_i \\sim \\mathrm{Bernoulli}(1 - p)$" in doc
    assert not RST_MARKUP.search(doc)


def test_docstring_can_be_left_out():
    shown = show_source(dropout_backward, docstring=False)
    assert '"""' not in shown.code
    assert shown.code.startswith("def dropout_backward(")
    assert "return apply_mask(" in shown.code
    md = shown._repr_markdown_()
    assert ">" not in md.split("```python")[0]


@pytest.mark.parametrize("name,obj", OBJECTS, ids=[n for n, _ in OBJECTS])
def test_no_rst_markup_survives_in_any_library_docstring(name, obj):
    md = prose(rst_to_markdown(obj.__doc__))
    found = RST_MARKUP.search(md)
    assert not found, found.group(0)
    assert md.count("$$") % 2 == 0
    # Every inline math span opens and closes on the same line.
    for line in md.splitlines():
        if "$$" not in line:
            assert line.count("$") % 2 == 0, line


def test_math_roles_blocks_and_cross_references():
    doc = """Scale by :math:`1/(1-p)`, see :func:`~dropoutlib.numpy.dropout` and
    :class:`dropoutlib.numpy.nn.Linear` or :func:`the mask <bernoulli_mask>`.

    .. math::
       :label: scale

       y = \\frac{m x}{1 - p}

    Parameters
    ----------
    x : numpy.ndarray
        The input ``x``,
        on two lines.
    p : float, default 0.5

    Examples
    --------
    >>> 1 + 1
    2
    """
    md = rst_to_markdown(doc)
    assert md.splitlines()[0] == "Scale by $1/(1-p)$, see `dropout()` and"
    assert "`dropoutlib.numpy.nn.Linear` or `the mask`." in md
    assert "$$\ny = \\frac{m x}{1 - p}\n$$" in md and ":label:" not in md
    assert "**Parameters**" in md
    assert "- `x` (numpy.ndarray): The input `x`, on two lines." in md
    assert "- `p` (float, default 0.5)" in md
    assert "```python\n>>> 1 + 1\n2\n```" in md


def test_simple_table_becomes_a_pipe_table():
    doc = """Table:

    =====  ==========
    name   value
    =====  ==========
    ``a``  :math:`x`
    b      two words
    =====  ==========
    """
    md = rst_to_markdown(doc)
    assert "| name | value |\n|---|---|\n| `a` | $x$ |\n| b | two words |" in md


def test_literal_block_becomes_fenced_code():
    md = rst_to_markdown("Run it::\n\n    python -m x\n\nDone.")
    assert md == "Run it:\n\n```\npython -m x\n```\n\nDone."


def test_source_code_without_docstring_shows_code_only():
    shown = SourceCode("x = 1", "m.x")
    assert shown._repr_markdown_() == "`m.x`\n\n```python\nx = 1\n```\n"
