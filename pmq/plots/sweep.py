"""The co-design sweep's Pareto figure: top-1 against latency, energy and area, one panel each.

``pmq sweep`` ends with :func:`save_sweep_figure` (``OUT/pareto.png``, from ``sweep.csv`` and
``pareto.csv`` alone, so it can be redrawn any time).

Every finished point is a grey dot; the points no other beats on all four axes at once
(``pareto.csv``) are coloured by budget, so a panel shows where the 4-D optimum sits in that 2-D
view (a Pareto point may look dominated in one panel: it wins on another axis).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from pmq.plots.style import DOUBLE_COLUMN_IN, MARKERS, PALETTE, new_figure, save, style
from pmq.runs import read_run

AXES = (("latency_s", 1e3, "latency (ms)"), ("energy_pj", 1e-6, "energy (µJ)"), ("area_mm2", 1.0, "area (mm²)"))


def plot_sweep_pareto(rows: Sequence[Mapping[str, Any]], pareto: Sequence[Mapping[str, Any]],
                      title: str = "") -> Figure:
    """Top-1 vs latency, energy and area of a sweep's points (``sweep.csv`` rows), its Pareto set coloured."""
    ok = [row for row in rows if row["status"] == "ok" and row.get("top1") not in (None, "")]
    budgets = sorted({str(row["budget"]) for row in pareto}, key=_budget_order)
    fig = new_figure(DOUBLE_COLUMN_IN, 2.8)
    axes = fig.subplots(1, len(AXES), sharey=True)
    for ax, (key, scale, label) in zip(axes, AXES, strict=True):
        ax.scatter([float(r[key]) * scale for r in ok], [100 * float(r["top1"]) for r in ok], s=3, color="0.75",
                   linewidths=0, rasterized=True, label=f"all {len(ok)} points")
        for i, budget in enumerate(budgets):
            best = [r for r in pareto if str(r["budget"]) == budget]
            ax.scatter([float(r[key]) * scale for r in best], [100 * float(r["top1"]) for r in best], s=10,
                       color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)], linewidths=0,
                       label=f"Pareto, budget {budget} ({len(best)})")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor ones overlap
        ax.set_xlabel(label)
    axes[0].set_ylabel("top-1 (%)")
    # below the panels: inside one, the legend would cover points wherever it sat
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(budgets) + 1,
               markerscale=1.5)
    if title:
        fig.suptitle(title)
    return fig


def save_sweep_figure(out: str | Path) -> Path:
    """``OUT/pareto.png`` of a finished sweep folder (its ``sweep.csv``, ``pareto.csv`` and summary)."""
    out = Path(out)
    rows, best = (list(csv.DictReader((out / name).read_text().splitlines())) for name in ("sweep.csv", "pareto.csv"))
    summary = read_run(out).summary
    title = f"{summary.model_tag}: {len(rows)} points, objective {summary.objective}"
    with style():
        return save(plot_sweep_pareto(rows, best, title), [out / "pareto.png"])[0]


def _budget_order(budget: str) -> tuple[float, str]:
    head = budget.split("x:")[0]
    try:
        return float(head), budget
    except ValueError:
        return float("inf"), budget
