"""Draw the book's favicon, ``_static/favicon.png``: a 3 x 3 layer of units, three dropped.

Usage: ``python tools/make_favicon.py`` (the PNG is committed; nothing runs at build time).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = Path(__file__).resolve().parents[1] / "_static" / "favicon.png"
BLUE = "#0072B2"  # dropoutlib.plotting.COLORS[0]
DROPPED = {(0, 1), (1, 2), (2, 0)}


def main() -> None:
    fig = plt.figure(figsize=(1, 1), dpi=64)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.5, 2.5)
    ax.set_ylim(-0.5, 2.5)
    ax.set_aspect("equal")
    ax.axis("off")
    for i in range(3):
        for j in range(3):
            dropped = (i, j) in DROPPED
            ax.add_patch(
                plt.Circle(
                    (j, 2 - i),
                    0.36,
                    facecolor="none" if dropped else BLUE,
                    edgecolor=BLUE,
                    linewidth=3.2 if dropped else 0,
                    linestyle=(0, (1.2, 1.0)) if dropped else "-",
                )
            )
    fig.savefig(OUT, transparent=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
