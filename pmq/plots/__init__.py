"""Paper figures from a results folder (``pmq.results``) alone: ``plot_results(dir, fmt)``.

Each figure is a function ``Results -> Figure | None`` in ``FIGURES`` (None: the folder holds no
data for it, e.g. no patch-wise run); all share the style in :mod:`pmq.plots.style`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from pmq.errors import PMQError
from pmq.plots.allocation import plot_allocation_heatmap
from pmq.plots.breakdown import plot_breakdown
from pmq.plots.pareto import plot_pareto_accuracy, plot_pareto_omega
from pmq.plots.speedup import plot_speedup
from pmq.plots.style import (
    DOUBLE_COLUMN_IN,
    FORMATS,
    OKABE_ITO,
    SINGLE_COLUMN_IN,
    new_figure,
    png_bytes,
    save,
    style,
)
from pmq.plots.tokens import plot_token_bits
from pmq.registry import Registry
from pmq.results import FIGURES_DIR, Results, load_results

FIGURES: Registry[Callable[[Results], Figure | None]] = Registry("figure", {
    "pareto_accuracy": plot_pareto_accuracy,
    "pareto_omega": plot_pareto_omega,
    "allocation_heatmap": plot_allocation_heatmap,
    "breakdown": plot_breakdown,
    "speedup": plot_speedup,
    "token_bits": plot_token_bits,
})
"""Figures by name; ``@FIGURES.register("name")`` on a ``Results -> Figure | None`` function adds one
to ``pmq plot`` and the demo."""

__all__ = [
    "DOUBLE_COLUMN_IN", "FIGURES", "FORMATS", "OKABE_ITO", "SINGLE_COLUMN_IN", "new_figure", "plot_results",
    "png_bytes", "save", "style",
]


def plot_results(results_dir: str | Path, fmt: str | Sequence[str] = "pdf",
                 out_dir: str | Path | None = None) -> list[Path]:
    """Draw every figure the folder has data for into ``out_dir`` (default ``<results_dir>/figures``),
    in one format or several (``("pdf", "png")`` draws each figure once and saves it twice).

    Reads only the result files (see :mod:`pmq.results`); a missing one is a PMQError naming it.
    """
    formats = [fmt] if isinstance(fmt, str) else list(fmt)
    for f in formats:
        if f not in FORMATS:
            raise PMQError(f"unknown figure format {f!r}: use one of {', '.join(FORMATS)}")
    results = load_results(results_dir)
    target = Path(out_dir) if out_dir is not None else results.root / FIGURES_DIR
    written = []
    with style():
        for name, draw in FIGURES.items():
            fig = draw(results)
            if fig is not None:
                written += save(fig, [target / f"{name}.{f}" for f in formats])
    return written
