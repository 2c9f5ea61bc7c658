"""Speedup and energy saving of each accelerator and budget over the INT8 baseline."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pmq.errors import PMQError
from pmq.plots.style import DOUBLE_COLUMN_IN, MARKERS, OBJECTIVE_NAME, PALETTE, new_figure
from pmq.results import Results


def accelerator_colours(results: Results) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(results.accelerators)}


def plot_speedup(results: Results) -> Figure | None:
    """Columns: the searched objectives (x = budget as a multiple of W8A8's cost). Rows: speedup and
    energy saving of (accelerator, allocation) over the baseline setting on the baseline accelerator."""
    base_accel, base_setting = results.baseline
    base = results.point(base_setting, base_accel)
    if base is None:
        raise PMQError(f"{results.root / 'points.csv'} has no {base_setting} row on {base_accel}, the speedup "
                       "baseline: re-run the demo into that folder", param="results_dir")
    objectives = list(dict.fromkeys(p["objective"] for p in results.points
                                    if p["method"] != "uniform" and p["budget_factor"] is not None))
    if not objectives:
        return None
    colours = accelerator_colours(results)
    # the baseline accelerator is left out: on an INT8 array fewer bits change nothing, so its lines
    # would be flat at 1x (stated in the report instead)
    shown = [a for a in results.accelerators if a != base_accel]
    fig = new_figure(DOUBLE_COLUMN_IN, 3.3)
    axes = fig.subplots(2, len(objectives), sharey="row", squeeze=False)
    methods = list(dict.fromkeys(p["method"] for p in results.points
                                 if p["method"] != "uniform" and p["budget_factor"] is not None))
    for j, objective in enumerate(objectives):
        for k, accelerator in enumerate(shown):
            for method in methods:
                points = sorted((p for p in results.where(method=method, objective=objective, accelerator=accelerator)
                                 if p["budget_factor"] is not None), key=lambda p: p["budget_factor"])
                xs = [p["budget_factor"] for p in points]
                for i, value in enumerate((lambda p: base["latency_s"] / p["latency_s"],
                                           lambda p: p["energy_pj"] / base["energy_pj"])):
                    axes[i, j].plot(xs, [value(p) for p in points], color=colours[accelerator],
                                    linestyle=results.style(method).linestyle, marker=MARKERS[k % len(MARKERS)],
                                    markerfacecolor="white" if method != "pmq" else colours[accelerator],
                                    zorder=4 if method == "pmq" else 3)
        where = f" on {results.primary_accelerator}" if objective in ("latency", "energy") else ""
        axes[1, j].set_xlabel(f"{OBJECTIVE_NAME.get(objective, objective)} budget{where} (× {base_setting})")
        axes[0, j].set_title(f"searched under a {OBJECTIVE_NAME.get(objective, objective)} budget", pad=2)
        for ax in axes[:, j]:
            ax.axhline(1.0, color="0.5", linewidth=0.6, zorder=0)  # = the baseline
    axes[0, 0].set_ylabel("speedup (×)")
    axes[1, 0].set_ylabel("energy ratio (×)\nlower is better")
    accel_handles = [Line2D([], [], color=colours[a], marker=MARKERS[k % len(MARKERS)], linestyle="none", label=a)
                     for k, a in enumerate(shown)]
    method_handles = [Line2D([], [], color="0.3", linestyle=results.style(m).linestyle,
                             label=results.style(m).label) for m in methods]
    fig.legend(handles=accel_handles + method_handles, loc="outside upper center",
               ncol=len(accel_handles) + len(method_handles), title_fontsize=7,
               title=f"against uniform {base_setting} on {base_accel} (not drawn: fewer bits do not change its cost)")
    return fig
