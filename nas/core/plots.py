"""Writing a figure: every PNG the project saves (search figures, estimator plots) goes through
``save_png``, at one resolution, atomically, with the umask's file mode."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # only to close; wandb.Image(fig) also needs it imported
from matplotlib.figure import Figure

from nas.core.io import atomic_file

DPI = 120


def new_figure(width: float, height: float, ncols: int = 1):
    """A pyplot-free figure (no GUI backend, nothing left in pyplot's registry) and its axes."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols)
    return fig, axes


def spans_decades(values, decades: float = 3.0) -> bool:
    """Whether ``values`` are all positive and span more than ``decades`` orders of magnitude
    (zero-cost proxies such as synflow do): such an axis is drawn on a log scale."""
    values = [float(v) for v in values]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 10**decades


def save_png(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` as a PNG at ``DPI`` (parents created, atomically: a temporary file in the
    same directory, then ``os.replace``), closes it and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(path, "wb") as f:  # the umask's mode, as every result file
            fig.savefig(f, format="png", dpi=DPI)
    finally:
        plt.close(fig)  # a no-op for our pyplot-free figures, frees a pyplot-made one
    return path
