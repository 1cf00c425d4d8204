"""Tests of dropoutlib.plotting: the shared style is applied and legible on a phone."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from dropoutlib import plotting


def test_style_sets_sharp_figures_and_the_palette():
    plotting.use_book_style()
    rc = matplotlib.rcParams
    assert rc["figure.dpi"] == plotting.DPI == rc["savefig.dpi"]
    assert tuple(rc["figure.figsize"]) == plotting.FIGSIZE
    assert rc["axes.prop_cycle"].by_key()["color"] == list(plotting.COLORS)


def test_default_figure_text_is_legible_in_a_phone_column():
    """Labels at least 9 CSS px and ticks at least 8.5 px when a default figure fills the column."""
    plotting.use_book_style()
    rc = matplotlib.rcParams
    width = plotting.FIGSIZE[0]
    assert plotting.FIGSIZE_STACKED[0] == width
    assert plotting.phone_text_px(rc["axes.labelsize"], width) >= 9.0
    for key in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize"):
        assert plotting.phone_text_px(rc[key], width) >= 8.5, key


def test_png_has_well_over_the_pixels_of_the_laptop_column():
    """A default figure has >= 1.7x the pixels of the ~720-px laptop column (sharp on HiDPI)."""
    from matplotlib.figure import Figure

    plotting.use_book_style()
    fig = Figure(figsize=plotting.FIGSIZE, dpi=plotting.DPI)
    width_px = fig.get_size_inches()[0] * fig.dpi
    assert width_px >= 1.7 * 720


def test_phone_text_px_formula_and_bad_input():
    assert plotting.phone_text_px(72, 1.0) == plotting.PHONE_COLUMN_PX
    assert plotting.phone_text_px(12, 6.4) == pytest.approx(
        12 / 72 * plotting.PHONE_COLUMN_PX / 6.4
    )
    with pytest.raises(ValueError, match="must be positive"):
        plotting.phone_text_px(0, 6.4)
    with pytest.raises(ValueError, match="must be positive"):
        plotting.phone_text_px(12, -1)
