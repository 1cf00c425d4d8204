"""The book's shared plotting style: sharp on a laptop, legible on a phone.

Every chapter calls :func:`use_book_style` once, so figures share fonts, sizes, colours and
grid across the book. Figure sizes are always explicit (``figsize=``) in the chapters.

Why these numbers. The book's HTML column is about 720 px wide on a laptop and about 360 px on
a 390-px phone, and a figure is scaled to the column width. A figure ``W`` inches wide therefore
shows text of ``s`` points at ``s / 72 * 360 / W`` CSS pixels on a phone. With the default width
of 6.4 inches, 12-point labels and 11-point tick labels come out at about 9.3 and 8.6 px on a
phone and twice that on a laptop (:func:`phone_text_px` computes it). Figures are rendered at
200 dpi, so the PNG has about twice as many pixels as the laptop column shows: sharp on
high-density screens without SVG, whose random element ids would make notebook outputs differ
from run to run. Multi-panel figures are stacked vertically (:data:`FIGSIZE_STACKED`); the
wide size is for two panels at most, whose text is smaller on a phone.
"""

from __future__ import annotations

__all__ = [
    "COLORS",
    "DPI",
    "FIGSIZE",
    "FIGSIZE_STACKED",
    "FIGSIZE_WIDE",
    "PHONE_COLUMN_PX",
    "phone_text_px",
    "use_book_style",
]

#: Default figure size (inches) for a single plot.
FIGSIZE = (6.4, 3.6)
#: Two or three panels stacked vertically (``plt.subplots(2, 1, figsize=FIGSIZE_STACKED)``).
FIGSIZE_STACKED = (6.4, 6.4)
#: Two panels side by side; on a phone their text is two thirds of the default's.
FIGSIZE_WIDE = (9.6, 3.4)
#: A colour-blind-safe palette (Okabe & Ito), in the order the chapters use it.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: Resolution of figures shown in notebooks and in the book (pixels per inch).
DPI = 200
#: Width in CSS pixels of the book's text column on a 390-px-wide phone.
PHONE_COLUMN_PX = 358

_FONT_SIZE = 12.0
_TICK_SIZE = 11.0


def phone_text_px(points: float, figure_width: float) -> float:
    """Height in CSS pixels of ``points``-point text when a figure fills a phone's column.

    Parameters
    ----------
    points : float
        Font size in points (1/72 inch of the figure).
    figure_width : float
        Figure width in inches (``figsize[0]``).

    Returns
    -------
    float
        ``points / 72 * PHONE_COLUMN_PX / figure_width``.

    Examples
    --------
    >>> round(phone_text_px(12, 6.4), 1)
    9.3
    """
    if points <= 0 or figure_width <= 0:
        raise ValueError(
            f"points and figure_width must be positive, but got {points} and {figure_width}"
        )
    return points / 72 * PHONE_COLUMN_PX / figure_width


def use_book_style() -> None:
    """Set matplotlib's rcParams to the book's style (idempotent, no return value).

    Fonts: 12 pt for labels, titles and text, 11 pt for ticks and legends; figures at
    :data:`DPI` in notebooks and when saved; the Okabe-Ito colour cycle; light grid; constrained
    layout.
    """
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(
        {
            "figure.figsize": FIGSIZE,
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "font.size": _FONT_SIZE,
            "axes.titlesize": _FONT_SIZE,
            "axes.labelsize": _FONT_SIZE,
            "xtick.labelsize": _TICK_SIZE,
            "ytick.labelsize": _TICK_SIZE,
            "legend.fontsize": _TICK_SIZE,
            "figure.titlesize": _FONT_SIZE,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=list(COLORS)),
            "legend.frameon": False,
            "lines.linewidth": 1.8,
            "lines.markersize": 6.0,
            "figure.constrained_layout.use": True,
        }
    )
