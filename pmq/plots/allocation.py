"""Bit-allocation heat maps: layer × component, weights and activations side by side."""

from __future__ import annotations

import re

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pmq.allocation import MAX_BITS, MIN_BITS, BitAllocation
from pmq.plots.style import DOUBLE_COLUMN_IN, new_figure
from pmq.results import Results

PART_NAMES = {"attn.qkv": "qkv", "attn.matmul_qk": "q·kᵀ", "attn.matmul_av": "attn·v", "attn.proj": "proj",
              "mlp.fc1": "fc1", "mlp.fc2": "fc2"}
_BLOCK = re.compile(r"^(?:.*\.)?blocks\.(\d+)\.(.+)$")
FLOAT_COLOUR = "#d9d9d9"
MAX_PANELS = 4


def bit_colours() -> tuple[ListedColormap, BoundaryNorm]:
    """One cividis shade per integer bit-width MIN_BITS..MAX_BITS (dark = few bits)."""
    levels = np.arange(MIN_BITS, MAX_BITS + 1)
    cmap = ListedColormap([_cividis(x) for x in np.linspace(0.0, 1.0, len(levels))])
    return cmap, BoundaryNorm(np.append(levels, MAX_BITS + 1) - 0.5, cmap.N)


def _cividis(x: float) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    return colormaps["cividis"](x)


def layer_grid(component_names: list[str]) -> tuple[list[str], list[str], list[tuple[str, int, str | None]]]:
    """(row labels, block part columns, cells); a cell is (component, row, part or None = whole row).

    Transformer blocks give one row each with a cell per part; components outside the blocks
    (``patch_embed.proj``, ``head``) get a row of their own, spanning the width.
    """
    rows: list[str] = []
    parts: list[str] = []
    cells: list[tuple[str, int, str | None]] = []
    for name in component_names:
        match = _BLOCK.match(name)
        row_label = f"block {match[1]}" if match else name
        if not rows or rows[-1] != row_label:
            rows.append(row_label)
        if match and match[2] not in parts:
            parts.append(match[2])
        cells.append((name, len(rows) - 1, match[2] if match else None))
    return rows, parts, cells


def _draw(ax, allocation: BitAllocation, operand: str, cmap: ListedColormap, norm: BoundaryNorm) -> None:
    rows, parts, cells = layer_grid(list(allocation))
    width = max(len(parts), 1)
    for name, row, part in cells:
        bits = getattr(allocation[name], operand)
        x, w = (parts.index(part), 1) if part is not None else (0, width)
        colour = FLOAT_COLOUR if bits is None else cmap(norm(bits))
        ax.add_patch(Rectangle((x, row), w, 1, facecolor=colour, edgecolor="white", linewidth=0.8))
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] if bits is not None else 1.0
        text = "fp" if bits is None else str(bits)
        ax.text(x + w / 2, row + 0.5, text, ha="center", va="center", fontsize=6,
                color="black" if luminance > 0.5 else "white")
    ax.set_xlim(0, width)
    ax.set_ylim(len(rows), 0)
    ax.set_xticks(np.arange(len(parts)) + 0.5, [PART_NAMES.get(p, p) for p in parts])
    ax.set_yticks(np.arange(len(rows)) + 0.5, rows)
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _labels_to_show(results: Results) -> list[str]:
    highlight = [label for label in results.run.get("highlight", []) if label in results.entries]
    if highlight:
        return highlight[:MAX_PANELS]
    searched = [label for label, e in results.entries.items() if e.method != "uniform"]
    return (searched or list(results.entries))[:2]


def _title(results: Results, label: str) -> str:
    entry = results.entries[label]
    method = results.style(entry.method).label
    if entry.method == "uniform":
        return f"uniform {label}"
    point = results.point(label, results.primary_accelerator)
    acc = f", top-1 {100 * point['top1']:.1f}%" if point and point["top1"] is not None else ""
    return f"{method}, {entry.objective} ≤ {entry.budget}{acc}"


def plot_allocation_heatmap(results: Results) -> Figure:
    """Per highlighted allocation: weight bits and activation bits per layer × component."""
    labels = _labels_to_show(results)
    allocations = [results.allocation(label) for label in labels]
    n_rows = len(layer_grid(list(allocations[0]))[0])
    fig = new_figure(DOUBLE_COLUMN_IN, len(labels) * (0.5 + 0.17 * n_rows))
    rows = fig.subfigures(len(labels), 1, squeeze=False)[:, 0]
    cmap, norm = bit_colours()
    for sub, label, allocation in zip(rows, labels, allocations, strict=True):
        ax_w, ax_a = sub.subplots(1, 2)
        _draw(ax_w, allocation, "w", cmap, norm)
        _draw(ax_a, allocation, "a", cmap, norm)
        ax_a.set_yticklabels([])
        ax_w.set_title("weights (2nd operand of q·kᵀ, attn·v)", pad=2)
        ax_a.set_title("activations (input; 1st operand of q·kᵀ, attn·v)", pad=2)
        sub.suptitle(_title(results, label), fontsize=8, fontweight="bold")
        bar = sub.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[ax_w, ax_a], shrink=0.9, aspect=15, pad=0.01)
        bar.set_ticks(np.arange(MIN_BITS, MAX_BITS + 1))
        bar.set_label("bits (grey: float)")
        bar.outline.set_visible(False)
    return fig
