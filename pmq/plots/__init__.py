"""Paper figures from a run folder alone: ``plot_results(dir, fmt)``.

``pmq demo`` folders (``pmq.results``) get the paper figures; ``pmq search`` and ``pmq sweep``
folders get their frontier / design-space figure (:mod:`pmq.plots.runs`). A ``simulate`` folder
holds one table and no figure.

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
from pmq.plots.runs import plot_search_frontier, plot_sweep
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
from pmq.runs import Run, read_run, run_kind

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

RUN_FIGURES: dict[str, tuple[str, Callable[[Run], Figure]]] = {
    "search": ("frontier", plot_search_frontier),
    "sweep": ("sweep", plot_sweep),
}
"""Run kinds other than demo: the one figure each gets."""

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
    root = Path(results_dir)
    target = Path(out_dir) if out_dir is not None else root / FIGURES_DIR
    kind = run_kind(root)
    written = []
    with style():
        if kind in RUN_FIGURES:
            run = read_run(root)
            name, draw = RUN_FIGURES[kind]
            return save(draw(run), [target / f"{name}.{f}" for f in formats])
        if kind == "simulate":
            raise PMQError(f"{root} is a `pmq simulate` folder (per_op.csv, one table): pmq plot draws "
                           "demo, search and sweep folders", param="results_dir")
        results = load_results(root)
        for name, draw in FIGURES.items():
            fig = draw(results)
            if fig is not None:
                written += save(fig, [target / f"{name}.{f}" for f in formats])
    return written
