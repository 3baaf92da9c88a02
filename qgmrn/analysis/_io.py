"""Atomic PNG writer shared by the analysis modules (text files: `qgmrn.fileio`).

The figure is written to a temporary name in its destination directory and then renamed over the
target (``os.replace`` is atomic on POSIX), so a reader never sees half a PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from qgmrn.fileio import atomic_write


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save `fig` as a PNG at `path` atomically; returns the path."""
    with atomic_write(path, "wb", fsync=False) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)
