"""Latency and energy per op type, stacked, for a few allocations on every accelerator preset."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from pmq.plots.style import DOUBLE_COLUMN_IN, OKABE_ITO, new_figure
from pmq.results import Results

KIND_COLOURS = {  # op kind in the per-op CSVs → colour
    "linear": OKABE_ITO["blue"], "matmul": OKABE_ITO["vermillion"], "softmax": OKABE_ITO["orange"],
    "layernorm": OKABE_ITO["green"], "gelu": OKABE_ITO["sky"], "add": OKABE_ITO["purple"],
    "token_score": OKABE_ITO["yellow"], "regroup": OKABE_ITO["black"],  # patch-wise overheads
}
KIND_NAMES = {"linear": "linear layers", "matmul": "attention matmuls", "add": "residual add",
              "token_score": "token ranking", "regroup": "token regrouping"}
QUANTITIES = (("latency_s", 1e3, "latency per\nimage (ms)"), ("energy_pj", 1e-6, "energy per\nimage (µJ)"))


def breakdown_labels(results: Results) -> list[str]:
    """The baseline setting, the other integer uniform settings, the highlighted and patch-wise allocations."""
    _, base = results.baseline
    uniform = [label for label, e in results.entries.items() if e.method == "uniform" and label != "float"]
    labels = ([base] if base in uniform else []) + [u for u in uniform if u != base]
    labels += [label for label in results.run.get("highlight", []) if label in results.entries]
    labels += [label for label, e in results.entries.items() if e.method == "patchwise"]
    return labels or list(results.entries)[:4]


def short_label(results: Results, label: str) -> str:
    entry = results.entries[label]
    if entry.method == "uniform":
        return label
    if entry.method == "patchwise":
        return results.style("patchwise").short
    return f"{results.style(entry.method).short} {entry.budget.split(':')[0].replace('x', '×')}"


def per_kind(rows: list[dict], column: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["kind"]] = totals.get(row["kind"], 0.0) + float(row[column])
    return totals


def plot_breakdown(results: Results) -> Figure:
    """Rows: latency, energy. Columns: accelerator presets. Bars: allocations, stacked by op kind."""
    labels = breakdown_labels(results)
    accelerators = results.accelerators
    fig = new_figure(DOUBLE_COLUMN_IN, 3.6)
    axes = fig.subplots(len(QUANTITIES), len(accelerators), sharey="row", squeeze=False)
    kinds_seen: list[str] = []
    x = np.arange(len(labels))
    for j, accelerator in enumerate(accelerators):
        rows = {label: results.ops(label, accelerator) for label in labels}
        for i, (column, scale, ylabel) in enumerate(QUANTITIES):
            ax = axes[i, j]
            totals = {label: per_kind(rows[label], column) for label in labels}
            kinds = [k for k in KIND_COLOURS if any(k in t for t in totals.values())]
            kinds += sorted({k for t in totals.values() for k in t} - set(kinds))
            bottom = np.zeros(len(labels))
            for n, kind in enumerate(kinds):
                heights = np.array([totals[label].get(kind, 0.0) * scale for label in labels])
                colour = KIND_COLOURS.get(kind, f"C{n % 8}")
                ax.bar(x, heights, 0.72, bottom=bottom, color=colour, edgecolor="white", linewidth=0.3,
                       label=KIND_NAMES.get(kind, kind))
                bottom += heights
                if kind not in kinds_seen:
                    kinds_seen.append(kind)
            ax.set_xticks(x, [short_label(results, label) for label in labels] if i == len(QUANTITIES) - 1 else [],
                          rotation=90)
            ax.grid(axis="x", visible=False)
            if j == 0:
                ax.set_ylabel(ylabel)
            if i == 0:
                ax.set_title(accelerator, pad=2)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.containers}
    ordered = [handles[KIND_NAMES.get(k, k)] for k in kinds_seen]
    fig.legend(ordered, [KIND_NAMES.get(k, k) for k in kinds_seen], loc="outside upper center",
               ncol=min(len(kinds_seen), 6))
    return fig
