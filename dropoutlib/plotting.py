"""The book's shared plotting style.

Every chapter calls :func:`use_book_style` once, so figures share fonts, sizes, colours and
grid across the book. Figure sizes are always explicit (``figsize=``) in the chapters.
"""

from __future__ import annotations

__all__ = ["COLORS", "FIGSIZE", "FIGSIZE_WIDE", "use_book_style"]

#: Default figure size (inches) for a single plot.
FIGSIZE = (6.4, 3.6)
#: Figure size for two or three panels side by side.
FIGSIZE_WIDE = (9.6, 3.4)
#: A colour-blind-safe palette (Okabe & Ito), in the order the chapters use it.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def use_book_style() -> None:
    """Set matplotlib's rcParams to the book's style (idempotent, no return value)."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(
        {
            "figure.figsize": FIGSIZE,
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=list(COLORS)),
            "legend.frameon": False,
            "lines.linewidth": 1.6,
            "figure.constrained_layout.use": True,
        }
    )
