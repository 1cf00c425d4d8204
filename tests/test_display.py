"""Tests of dropoutlib.display.show_source: chapters show the library's own code."""

from __future__ import annotations

import inspect

from dropoutlib.display import show_source
from dropoutlib.numpy import dropout, dropout_backward


def test_show_source_is_the_library_source():
    shown = show_source(dropout)
    assert shown.code == inspect.getsource(dropout).rstrip()
    assert shown.title == "dropoutlib.numpy.functional.dropout"
    assert repr(shown).startswith("# dropoutlib.numpy.functional.dropout\ndef dropout(")
    md = shown._repr_markdown_()
    assert md.count("```") == 2 and "```python\ndef dropout(" in md


def test_docstring_can_be_folded_away():
    shown = show_source(dropout_backward, docstring=False)
    assert '"""' not in shown.code
    assert shown.code.startswith("def dropout_backward(")
    assert "return apply_mask(" in shown.code
