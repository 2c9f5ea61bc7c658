"""One figure style for every PMQ plot: paper column widths, Okabe–Ito colours, embedded fonts.

rcParams are set only inside :func:`style` (a ``matplotlib.rc_context``), never at import, so
importing pmq does not change a user's own plots. Figures are built with ``matplotlib.figure.Figure``
directly (no pyplot, no global figure registry, no GUI backend needed).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from pmq.methods import OKABE_ITO

SINGLE_COLUMN_IN = 3.5  # IEEE/ACM single column
DOUBLE_COLUMN_IN = 7.16  # IEEE double column (full text width)
FORMATS = ("pdf", "png", "svg")

PALETTE = tuple(OKABE_ITO.values())
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

OBJECTIVE_LINE = {"bops": "-", "latency": "--", "energy": ":", "size": "-."}
OBJECTIVE_NAME = {"bops": "BOPs", "latency": "latency", "energy": "energy", "size": "size"}

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.5,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "image.cmap": "cividis",
    "pdf.fonttype": 42,  # TrueType, embedded: editable text, accepted by IEEE PDF eXpress
    "ps.fonttype": 42,
    "svg.fonttype": "path",  # text as outlines: identical on machines without the font
    "savefig.dpi": 300,
    "savefig.bbox": None,  # keep the exact column width; constrained layout fits the content
    "figure.dpi": 100,
}


@contextmanager
def style() -> Iterator[None]:
    """The PMQ rcParams, for the duration of the ``with`` block only."""
    with mpl.rc_context(RC):
        yield


def new_figure(width: float = DOUBLE_COLUMN_IN, height: float = 2.4) -> Figure:
    """A constrained-layout figure of ``width`` inches (use SINGLE_COLUMN_IN or DOUBLE_COLUMN_IN)."""
    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (e.g. for ``IPython.display.Image`` in a notebook, no pyplot needed)."""
    buffer = io.BytesIO()
    with style():
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save(fig: Figure, paths: Sequence[Path]) -> list[Path]:
    """Save one figure in several formats (inside :func:`style`, so fonts and dpi apply), each via a
    temporary file then a rename. The layout is solved for the first and frozen for the rest."""
    from pmq.io import atomic_write

    def writer(fmt: str):
        return lambda tmp: fig.savefig(tmp, format=fmt)

    written = []
    for path in paths:
        written.append(atomic_write(path, writer(path.suffix.lstrip("."))))
        fig.set_layout_engine("none")
    return written
