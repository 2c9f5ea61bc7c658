"""PMQ allocations against uniform, random and HAWQ-v2 ones at equal cost, on the demo ViT.

Usage::

    python benchmarks/search_baselines.py [--limit N] [--budgets 6] [--random 5] [--out DIR]

For two costs — BOPs per image and simulated latency on ``bitfusion`` — and budgets spaced
geometrically between the cheapest allocation (every component at W2A2) and uniform W8A8, each
method picks one allocation per budget over the same bit pairs {2, 3, 4, 6, 8}²:

- **PMQ**: least ΣΩ (pmq metric, 64 calibration images) on the exact Pareto frontier under the budget;
- **HAWQ-v2**: the same search with the hawq metric (Hutchinson traces, PyHessian's stopping rule);
- **random**: ``--random`` allocations per budget, each a random maximal allocation under the
  budget (random start, random components lowered until it fits, then raised in random order
  while they fit), so their costs sit at the budget like the searched ones; reported as the mean
  (± standard deviation) of their top-1 and cost;
- **uniform**: every one of the 25 uniform settings is evaluated; at a budget the uniform entry is
  the most accurate setting whose cost fits.

Every allocation is evaluated on the same seeded test images and simulated on bitfusion. Prints
Markdown tables and writes ``search_baselines.json`` (all allocations, provenance) and
``search_baselines.png/pdf`` (top-1 against GBOPs and against bitfusion latency) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import accelerators
import hwsim
from pmq.allocation import BitAllocation, Bits
from pmq.defaults import DEFAULT_SENSITIVITY_IMAGES
from pmq.experiment import Experiment
from pmq.io import provenance, write_json
from pmq.methods import METHODS
from pmq.plots.pareto import label_points
from pmq.plots.style import DOUBLE_COLUMN_IN, OKABE_ITO, new_figure, save, style
from pmq.search import CostTable, ModelSearch, bit_pairs

OBJECTIVES = ("bops", "latency")
ACCELERATOR = "bitfusion"
METRICS = ("pmq", "hawq")
RANDOM_STYLE = {"color": OKABE_ITO["sky"], "marker": "x", "label": "random (mean ± s.d.)"}
ZOOM_POINTS = 2.5  # the bottom row of the figure spans the best top-1 minus this
X_AXIS = {"bops": ("gbops", 1.0, "BOPs per image (G)"), "latency": ("latency_ms", 1.0, f"latency on {ACCELERATOR} (ms)")}


@dataclass
class Point:
    """One evaluated allocation."""

    method: str
    objective: str  # the budget's cost ("" for uniform settings)
    budget_factor: float | None  # budget / cost of uniform W8A8
    label: str
    top1: float
    gbops: float
    latency_ms: float
    energy_uj: float
    omega_pmq: float
    bits: dict[str, str]


def random_allocation(costs: CostTable, objective: str, budget: float, names: list[str],
                      choices: list[Bits], rng: random.Random) -> BitAllocation:
    """A random maximal allocation under ``budget``: no component can move to a dearer pair and still fit."""
    table = costs.per_choice[objective]
    pick = {name: rng.choice(choices) for name in names}

    def total() -> float:
        return costs.fixed[objective] + sum(table[n][pick[n]] for n in names)

    while total() > budget:
        name = rng.choice([n for n in names if table[n][pick[n]] > min(table[n].values())])
        pick[name] = rng.choice([b for b in choices if table[name][b] < table[name][pick[name]]])
    while True:
        spare = budget - total()
        moves = [(n, b) for n in names for b in choices if 0 < table[n][b] - table[n][pick[n]] <= spare]
        if not moves:
            return BitAllocation(pick)
        name = rng.choice(sorted({n for n, _ in moves}, key=names.index))
        pick[name] = rng.choice([b for n, b in moves if n == name])


def budget_factors(costs: CostTable, objective: str, names: list[str], count: int) -> list[float]:
    """``count`` budgets / W8A8, geometric between the cheapest allocation and W8A8 (both excluded)."""
    full = costs.total(objective, BitAllocation.uniform("W8A8", names))
    low = costs.feasible_range(objective)[0] / full
    return [float(low ** (1 - k / (count + 1))) for k in range(1, count + 1)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.experiment = Experiment("demo", checkpoint=args.checkpoint, data_dir=args.data, seed=args.seed)
        self.experiment.calibrate()
        self.names = self.experiment.component_names
        self.choices = bit_pairs()
        self.accelerator = accelerators.load(ACCELERATOR)
        search = ModelSearch(self.experiment, self.accelerator, OBJECTIVES,
                             sensitivity_images=args.sensitivity_images)
        self.costs = search.costs
        self.problems = {(metric, objective): search.problem(metric, (objective,))
                         for metric in METRICS for objective in OBJECTIVES}
        self.omega = {metric: self.problems[(metric, OBJECTIVES[0])].omega for metric in METRICS}
        self.sensitivity_s = dict(search.sensitivity_s)
        test = len(self.experiment.test_set)
        self.report = Report([], test if args.limit is None else min(args.limit, test))

    def measure(self, allocation: BitAllocation, method: str, objective: str, factor: float | None,
                label: str) -> Point:
        evaluated = self.experiment.evaluate(allocation, self.args.limit, progress=False)
        sim = hwsim.simulate(self.experiment.trace.workload(allocation), self.accelerator)
        point = Point(method, objective, factor, label, evaluated.top1, self.experiment.trace.bops(allocation) / 1e9,
                      sim.latency_s * 1e3, sim.energy_pj * 1e-6,
                      sum(self.omega["pmq"][n][b] for n, b in allocation.items()),
                      {n: str(b) for n, b in allocation.items()})
        self.report.points.append(point)
        return point

    def run(self) -> Report:
        args = self.args
        plans = {objective: budget_factors(self.costs, objective, self.names, args.budgets) for objective in OBJECTIVES}
        total = len(self.choices) + sum(len(f) for f in plans.values()) * (len(METRICS) + args.random)
        with tqdm(total=total, desc="evaluate allocations", unit="alloc") as bar:
            for b in self.choices:
                self.measure(BitAllocation.uniform(b, self.names), "uniform", "", None, str(b))
                bar.update()
            rng = random.Random(args.seed)
            for objective, factors in plans.items():
                full = self.costs.total(objective, BitAllocation.uniform("W8A8", self.names))
                for factor in factors:
                    budget = factor * full
                    for metric in METRICS:
                        allocation = self.problems[(metric, objective)].choose(budget)
                        self.measure(allocation, metric, objective, factor, f"{metric}-{objective}-{factor:.3f}x")
                        bar.update()
                    for i in range(args.random):
                        allocation = random_allocation(self.costs, objective, budget, self.names, self.choices, rng)
                        self.measure(allocation, "random", objective, factor, f"random{i}-{objective}-{factor:.3f}x")
                        bar.update()
        return self.report

@dataclass
class Report:
    """The evaluated points and what is printed and plotted from them (also from a saved JSON)."""

    points: list[Point]
    images: int

    def uniform_under(self, objective: str, factor: float) -> Point | None:
        """The most accurate uniform setting whose cost fits the budget."""
        column = X_AXIS[objective][0]
        full = next(getattr(p, column) for p in self.points if p.method == "uniform" and p.label == "W8A8")
        fits = [p for p in self.points if p.method == "uniform" and getattr(p, column) <= factor * full * (1 + 1e-9)]
        return max(fits, key=lambda p: p.top1, default=None)

    def uniform_front(self, column: str) -> list[Point]:
        """Uniform settings that no cheaper (or equally cheap) setting beats: the uniform staircase."""
        front: list[Point] = []
        for p in sorted((p for p in self.points if p.method == "uniform"), key=lambda p: (getattr(p, column), -p.top1)):
            if not front or p.top1 > front[-1].top1:
                front.append(p)
        return front

    def at(self, method: str, objective: str, factor: float) -> list[Point]:
        return [p for p in self.points if p.method == method and p.objective == objective and p.budget_factor == factor]

    def tables(self) -> str:
        return "\n".join(self.table(objective) for objective in OBJECTIVES)

    def table(self, objective: str) -> str:
        column, scale, label = X_AXIS[objective]
        lines = [f"### Budget on {label}\n",
                 "| budget (× W8A8) | PMQ top-1 | HAWQ-v2 top-1 | best uniform ≤ budget | random top-1, mean ± s.d. "
                 "(n) | PMQ − HAWQ | PMQ − uniform | PMQ − random |",
                 "|---:|---:|---:|---|---:|---:|---:|---:|"]
        for factor in sorted({p.budget_factor for p in self.points if p.objective == objective}):
            pmq, hawq = self.at("pmq", objective, factor)[0], self.at("hawq", objective, factor)[0]
            rand = [p.top1 for p in self.at("random", objective, factor)]
            uni = self.uniform_under(objective, factor)
            mean, sd = statistics.fmean(rand), statistics.pstdev(rand)
            uniform_text = f"{uni.label} {100 * uni.top1:.2f}" if uni else "none fits"
            uniform_gap = f"{100 * (pmq.top1 - uni.top1):+.2f}" if uni else "–"
            lines.append(
                f"| {factor:.3f} ({getattr(pmq, column) * scale:.3g}) | {100 * pmq.top1:.2f} | {100 * hawq.top1:.2f} | "
                f"{uniform_text} | {100 * mean:.2f} ± {100 * sd:.2f} ({len(rand)}) | "
                f"{100 * (pmq.top1 - hawq.top1):+.2f} | {uniform_gap} | {100 * (pmq.top1 - mean):+.2f} |")
        return "\n".join(lines) + "\n"

    def figure(self, out: Path) -> None:
        """Top row: the whole accuracy range; bottom row: the top ``ZOOM_POINTS`` points of it, where
        PMQ, HAWQ-v2 and the best uniform settings sit within a point of each other."""
        best = max(100 * p.top1 for p in self.points)
        low = min(100 * p.top1 for p in self.points if p.method != "uniform") - 3
        zoom = (best - ZOOM_POINTS, best + 0.4)
        with style():
            fig = new_figure(DOUBLE_COLUMN_IN, 4.4)
            axes = fig.subplots(2, len(OBJECTIVES), sharey="row", sharex="col")
            for col, objective in enumerate(OBJECTIVES):
                for row, limits in enumerate(((max(0.0, low), best + 1), zoom)):
                    self._panel(axes[row, col], objective, limits)
                axes[1, col].set_xlabel(X_AXIS[objective][2])
            axes[0, 0].set_ylabel(f"top-1 (%), {self.images:,} test images")
            axes[1, 0].set_ylabel(f"top-1 (%), top {ZOOM_POINTS:g} points")
            handles, labels = axes[0, 0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside upper center", ncol=len(labels))
            for path in save(fig, [out / f"search_baselines.{fmt}" for fmt in ("png", "pdf")]):
                print(f"wrote {path}")

    def _panel(self, ax, objective: str, limits: tuple[float, float]) -> None:
        column, scale, _ = X_AXIS[objective]
        front = self.uniform_front(column)
        look = METHODS.lookup("uniform").plot_kwargs
        ax.plot([getattr(p, column) * scale for p in front], [100 * p.top1 for p in front],
                color=look["color"], marker=look["marker"], linestyle=":", label="uniform (best at its cost)")
        factors = sorted({p.budget_factor for p in self.points if p.objective == objective})
        for method in METRICS:
            pts = [self.at(method, objective, f)[0] for f in factors]
            look = METHODS.lookup(method).plot_kwargs
            ax.plot([getattr(p, column) * scale for p in pts], [100 * p.top1 for p in pts],
                    color=look["color"], marker=look["marker"], label=look["label"])
        groups = [self.at("random", objective, f) for f in factors]
        ax.errorbar([np.mean([getattr(p, column) for p in g]) * scale for g in groups],
                    [100 * np.mean([p.top1 for p in g]) for g in groups],
                    yerr=[100 * np.std([p.top1 for p in g]) for g in groups], capsize=2,
                    color=RANDOM_STYLE["color"], marker=RANDOM_STYLE["marker"], label=RANDOM_STYLE["label"])
        ax.set_ylim(*limits)
        # name the uniform settings where they are easiest to read: below the zoom in the top row
        shown = [p for p in front if limits[0] <= 100 * p.top1 <= limits[1]
                 and (limits[1] - limits[0] <= ZOOM_POINTS + 1 or 100 * p.top1 < limits[1] - ZOOM_POINTS - 1)]
        xs = [getattr(p, column) * scale for p in front]
        spaced: list[Point] = []  # at most one label per tenth of the axis' width
        for p in shown:
            if not spaced or getattr(p, column) * scale - getattr(spaced[-1], column) * scale >= 0.1 * (max(xs) - min(xs)):
                spaced.append(p)
        label_points(ax, [getattr(p, column) * scale for p in spaced], [100 * p.top1 for p in spaced],
                     [p.label for p in spaced], METHODS.lookup("uniform").color)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="demo checkpoint (default: the bundled one)")
    parser.add_argument("--data", type=Path, help="Fashion-MNIST folder")
    parser.add_argument("--limit", type=int, default=5000, help="test images per evaluation (default 5000)")
    parser.add_argument("--budgets", type=int, default=6, help="budgets per cost (default 6)")
    parser.add_argument("--random", type=int, default=5, help="random allocations per budget (default 5)")
    parser.add_argument("--sensitivity-images", type=int, default=DEFAULT_SENSITIVITY_IMAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/search_baselines"))
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="print the tables and redraw the figure from a saved search_baselines.json")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.budgets, args.random, args.sensitivity_images = 16, 1, 1, 4
    if args.replot:
        saved = json.loads(args.replot.read_text())
        report = Report([Point(**p) for p in saved["points"]], saved["images"])
        print(report.tables())
        report.figure(args.out)
        return
    bench = Bench(args)
    report = bench.run()
    print(f"## PMQ vs HAWQ-v2, uniform and random allocations — {bench.experiment.loaded.tag}\n")
    print(f"{report.images} test images (seeded subset), bit pairs {{2,3,4,6,8}}², Ω from "
          f"{args.sensitivity_images} calibration images (pmq {bench.sensitivity_s['pmq']:.1f} s, hawq "
          f"{bench.sensitivity_s['hawq']:.1f} s); latency simulated on {ACCELERATOR}; {provenance()}\n")
    print(report.tables())
    write_json(args.out / "search_baselines.json", {
        "provenance": provenance(model_tag=bench.experiment.loaded.tag), "accelerator": ACCELERATOR,
        "accelerator_config": bench.accelerator.config, "images": report.images, "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "points": [asdict(p) for p in report.points]})
    report.figure(args.out)


if __name__ == "__main__":
    main()
