"""Plots as every command writes them: headless (matplotlib's Agg backend), PNG, atomically."""

from __future__ import annotations

import os


def pyplot():
    """matplotlib.pyplot on the Agg backend: no display needed, the same PNGs on any machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: str | os.PathLike, dpi: int = 120, **savefig_kwargs) -> None:
    """Write the figure as a PNG that appears whole or not at all, and free it."""
    from mmbert.atomic import atomic_file

    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi, **savefig_kwargs)
    pyplot().close(figure)
