"""Pareto figures: measured top-1 against every cost, and the searches' ΣΩ frontiers."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from pmq.plots.style import DOUBLE_COLUMN_IN, OBJECTIVE_LINE, OBJECTIVE_NAME, new_figure
from pmq.results import Results

COST_AXES = (  # points.csv column, scale to the plotted unit, axis label ({acc}: the accelerator)
    ("size_mb", 1.0, "model size (MB)"),
    ("gbops", 1.0, "BOPs per image (10⁹)"),
    ("latency_s", 1e3, "latency on {acc} (ms)"),
    ("energy_pj", 1e-6, "energy on {acc} (µJ)"),
)
OBJECTIVE_COLUMN = {"size": ("size_mb", 1.0), "bops": ("gbops", 1.0), "latency": ("latency_s", 1e3),
                    "energy": ("energy_pj", 1e-6)}
FLOAT_LABEL = "float"
COINCIDENT_PT = 3  # points closer than this (in points, both axes) share one label


def _series(results: Results, accelerator: str) -> list[tuple[str, str, list[dict]]]:
    """(method, objective, points) per search line, plus one uniform group."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in results.where(accelerator=accelerator):
        groups.setdefault((p["method"], p["objective"] or ""), []).append(p)
    order = sorted(groups, key=lambda k: (results.style(k[0]).order, k[1]))
    return [(m, o, groups[(m, o)]) for m, o in order]


def label_points(ax: Axes, xs: list[float], ys: list[float], labels: list[str], colour: str,
                 fontsize: float = 5.5, above: bool = False) -> None:
    """Name each point next to it, inside the axes, without labels overlapping: coincident points
    share one label; a label that would cover an earlier one, or a marker already drawn, moves to the
    corner of its point that covers the fewest.
    Labels go below-right of their points (``above``: above-right), away from the axes' edges."""
    ax.autoscale_view()
    to_points = 72 / ax.figure.dpi
    spots = ax.transData.transform(np.column_stack([xs, ys])) * to_points
    groups: list[list[int]] = []
    for i in np.argsort(-np.asarray(ys), kind="stable"):
        for group in groups:
            if np.all(np.abs(spots[i] - spots[group[0]]) < COINCIDENT_PT):
                group.append(i)
                break
        else:
            groups.append([i])
    width_pt, height_pt = ax.bbox.width * to_points, ax.bbox.height * to_points
    origin = np.array([ax.bbox.x0, ax.bbox.y0]) * to_points
    markers = [tuple(p) for line in ax.get_lines() if line.get_marker() not in (None, "None", "")
               for p in ax.transData.transform(line.get_xydata()) * to_points]
    placed: list[tuple[float, float, float, float]] = [(mx - 2.5, mx + 2.5, my - 2.5, my + 2.5) for mx, my in markers]

    def overlaps(box: tuple[float, float, float, float]) -> int:
        return sum(b[0] < box[1] and box[0] < b[1] and b[2] < box[3] and box[2] < b[3] for b in placed)

    for group in groups:
        text = ", ".join(labels[i] for i in group)
        x, y = spots[group[0]]
        w, h = 0.6 * fontsize * len(text), 1.2 * fontsize
        fits_above = y + 4 + h <= origin[1] + height_pt
        fits_below = y - 4 - h >= origin[1]
        prefer_y = 1 if (above and fits_above) or not fits_below else -1
        prefer_x = 1 if x + 4 + w <= origin[0] + width_pt else -1  # right, unless it would leave the axes
        corners = sorted(((sx, sy) for sy in (-1, 1) for sx in (1, -1)),
                         key=lambda c: (c[1] != prefer_y, c[0] != prefer_x))
        boxes = {}
        for sx, sy in corners:
            x0 = x + 4 * sx - (w if sx < 0 else 0)
            y0 = y + 4 * sy - (h if sy < 0 else 0)
            boxes[(sx, sy)] = (x0, x0 + w, y0, y0 + h)
        sx, sy = min(corners, key=lambda c: overlaps(boxes[c]))  # the first corner that covers the fewest
        box = boxes[(sx, sy)]
        placed.append(box)
        ax.annotate(text, (xs[group[0]], ys[group[0]]), xytext=(4 * sx, 4 * sy), textcoords="offset points",
                    fontsize=fontsize, ha="left" if sx > 0 else "right", va="bottom" if sy > 0 else "top",
                    color=colour, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.4})


def top1_standard_error(p: dict) -> float:
    """One binomial standard error of a measured top-1, in percentage points: sqrt(p(1-p)/n)."""
    return 100 * float(np.sqrt(p["top1"] * (1 - p["top1"]) / max(p["images"], 1)))


def plot_pareto_accuracy(results: Results) -> Figure:
    """Top-1 (± one standard error) vs size, BOPs, latency and energy (the latter two on the search's
    accelerator); the float model is a dotted reference line (its 32-bit cost would squeeze every
    other point). The legend shows each method's marker once and each budget objective's line once."""
    accelerator = results.primary_accelerator
    fig = new_figure(DOUBLE_COLUMN_IN, 2.3)
    axes = fig.subplots(1, len(COST_AXES), sharey=True)
    handles: dict[str, Line2D] = {}
    objectives: dict[str, None] = {}
    for ax, (column, scale, xlabel) in zip(axes, COST_AXES, strict=True):
        uniform = None
        for method, objective, points in _series(results, accelerator):
            look = results.style(method).plot_kwargs
            if method == "uniform":
                for p in points:
                    if p["label"] == FLOAT_LABEL:
                        handles["float"] = ax.axhline(100 * p["top1"], color=look["color"], linestyle=":",
                                                      linewidth=0.9, zorder=1)
                points = [p for p in points if p["label"] != FLOAT_LABEL]
                xs = [p[column] * scale for p in points]
                ys = [100 * p["top1"] for p in points]
                ax.errorbar(xs, ys, yerr=[top1_standard_error(p) for p in points], linestyle="none",
                            color=look["color"], elinewidth=0.6, capsize=1.5, zorder=2)
                handles["uniform"], = ax.plot(xs, ys, linestyle="none", marker=look["marker"], color=look["color"],
                                              markerfacecolor="white", markeredgewidth=1.0, zorder=3)
                uniform = (xs, ys, [p["label"] for p in points], look["color"])
            else:
                points = sorted(points, key=lambda p: p[column])
                xs, ys = [p[column] * scale for p in points], [100 * p["top1"] for p in points]
                ax.errorbar(xs, ys, yerr=[top1_standard_error(p) for p in points], linestyle="none",
                            color=look["color"], elinewidth=0.6, capsize=1.5, alpha=0.7, zorder=2)
                ax.plot(xs, ys, marker=look["marker"], color=look["color"],
                        linestyle=OBJECTIVE_LINE.get(objective, "-") if method != "patchwise" else "none",
                        markerfacecolor=look["color"], zorder=4)
                handles.setdefault(look["label"], Line2D([], [], marker=look["marker"], color=look["color"],
                                                         linestyle="none"))
                if method != "patchwise":
                    objectives.setdefault(objective, None)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_xlabel(xlabel.format(acc=accelerator))
        if uniform and uniform[0]:
            label_points(ax, *uniform)
    images = max(p["images"] for p in results.points)
    axes[0].set_ylabel(f"top-1 on {images} test images (%)\n± 1 standard error")
    for objective in objectives:
        handles[f"{OBJECTIVE_NAME.get(objective, objective)} budget"] = Line2D(
            [], [], color="0.3", linestyle=OBJECTIVE_LINE.get(objective, "-"))
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=min(5, len(handles)))
    return fig


def plot_pareto_omega(results: Results) -> Figure | None:
    """Each search's exact frontier: ΣΩ (its own metric) vs whole-model cost, chosen budgets marked."""
    searches = results.searches
    if not searches:
        return None
    fig = new_figure(DOUBLE_COLUMN_IN, 2.0)
    axes = fig.subplots(1, len(searches), squeeze=False)[0]
    for ax, search in zip(axes, searches, strict=True):
        metric, objective = search.metric, search.objective
        look = results.style(metric).plot_kwargs
        omega, cost = results.frontier(metric, objective)
        ax.step(cost, omega, where="post", color=look["color"], linewidth=1.0, label="exact frontier")
        chosen = [p for p in results.where(method=metric, objective=objective,
                                           accelerator=search.accelerator)
                  if p["omega"] is not None]
        column, scale = OBJECTIVE_COLUMN[objective]
        ax.plot([p[column] * scale for p in chosen], [p["omega"] for p in chosen], linestyle="none",
                marker=look["marker"], color=look["color"], markerfacecolor="white", markeredgewidth=1.0,
                label="chosen under budget", zorder=3)
        ax.set_yscale("log")
        named = [p for p in chosen if p["budget_factor"] is not None]
        label_points(ax, [p[column] * scale for p in named], [p["omega"] for p in named],
                     [f"{p['budget_factor']:g}×" for p in named], look["color"], fontsize=6, above=True)
        unit = search.unit.replace("uJ", "µJ")
        where = f" on {search.accelerator}" if objective in ("latency", "energy") else ""
        ax.set_xlabel(f"{OBJECTIVE_NAME.get(objective, objective)}{where} ({unit})")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_title(look["label"], pad=2)
        ax.text(0.97, 0.97, f"{len(omega):,} points", transform=ax.transAxes, ha="right", va="top", fontsize=6,
                color="0.35")
    axes[0].set_ylabel("ΣΩ (each metric's own scale)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncol=2)
    return fig
