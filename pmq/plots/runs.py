"""Figures of ``pmq search`` and ``pmq sweep`` folders (read through their checked manifest).

A search folder gets its frontier (ΣΩ against whole-model cost) with the chosen allocation and the
budget; a sweep folder gets top-1 against the objective for every design point, Pareto set marked.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from pmq.methods import method_style
from pmq.plots.style import (
    MARKERS,
    OBJECTIVE_NAME,
    OKABE_ITO,
    PALETTE,
    SINGLE_COLUMN_IN,
    new_figure,
)
from pmq.records import SearchSummary, SweepSummary
from pmq.results import read_csv
from pmq.runs import Run

_SWEEP_AXIS = {"latency": ("latency_s", 1e3, "latency (ms)"), "energy": ("energy_pj", 1e-6, "energy (uJ)")}


def plot_search_frontier(run: Run) -> Figure:
    s: SearchSummary = run.summary
    objective, frontier = s.objective, s.frontier
    rows = read_csv(run.path(frontier.file), numeric=("omega", objective))
    scale, fixed = frontier.unit_scale, frontier.fixed_cost[objective]
    costs = [(r[objective] + fixed) * scale for r in rows]
    chosen = min((i for i, c in enumerate(costs) if c <= s.budget_value * (1 + 1e-9)),
                 key=lambda i: rows[i]["omega"])
    fig = new_figure(SINGLE_COLUMN_IN, 2.4)
    ax = fig.add_subplot()
    pmq = method_style(s.metric)
    ax.step(costs, [r["omega"] for r in rows], where="post", color=pmq.color,
            label=f"exact frontier ({len(rows):,} points)")
    ax.axvline(s.budget_value, color=OKABE_ITO["black"], linestyle=":", linewidth=0.8,
               label=f"budget {s.budget}")
    ax.plot([costs[chosen]], [rows[chosen]["omega"]], linestyle="none", marker=pmq.marker, color=pmq.color,
            markeredgecolor="white", markersize=6, label=f"chosen (top-1 {100 * s.measured.top1:.2f}%)")
    ax.set_yscale("log")
    ax.set_xlabel(f"whole-model {OBJECTIVE_NAME[objective]} ({s.budget_unit})")
    ax.set_ylabel("ΣΩ (total sensitivity)")
    ax.set_title(f"{s.metric} search on {s.accelerator}")
    ax.legend(loc="upper right")
    return fig


def plot_sweep(run: Run) -> Figure:
    s: SweepSummary = run.summary
    column, scale, label = _SWEEP_AXIS[s.objective]
    rows = [r for r in read_csv(run.path("sweep.csv")) if r.get("status") == "ok"]
    best = {r["point"] for r in read_csv(run.path("pareto.csv"))}
    fig = new_figure(SINGLE_COLUMN_IN, 2.4)
    ax = fig.add_subplot()
    for i, budget in enumerate(s.budgets):
        points = [r for r in rows if r["budget"] == budget]
        ax.plot([r[column] * scale for r in points], [100 * r["top1"] for r in points], linestyle="none",
                marker=MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)], alpha=0.8,
                label=f"budget {budget}")
    front = [r for r in rows if r["point"] in best]  # 4-D (top-1, latency, energy, area): no line in 2-D
    ax.plot([r[column] * scale for r in front], [100 * r["top1"] for r in front], linestyle="none",
            color=OKABE_ITO["black"], marker="o", markerfacecolor="none", markersize=8,
            label="Pareto set (top-1, latency,\nenergy, area)")
    ax.set_xlabel(label)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"sweep: {s.designs} designs x {len(s.budgets)} budgets")
    ax.legend(loc="lower right")
    return fig
