"""The PMQ search: sensitivity Ω per choice + cost per choice → exact Pareto frontier → allocation.

Costs per component and bit pair come from the model's trace (size, BOPs) or from ``hwsim.estimate``
on its workload (latency, energy on a chosen accelerator). Ops that no allocation
changes (LayerNorm, softmax, residual adds, biases and norms in the size) form a fixed cost that is
added to every total, so budgets and reported numbers are whole-model figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hwsim
from hwsim.costtable import VariantTable, variant_table
from pmq.allocation import BitAllocation, Bits
from pmq.budget import Budget
from pmq.defaults import DEFAULT_BIT_CHOICES, DEFAULT_SENSITIVITY_IMAGES
from pmq.errors import PMQError
from pmq.pareto import Choice, Frontier, FrontierPoint, frontier
from pmq.records import Measurement, SearchSummary

if TYPE_CHECKING:  # torch-side types; importing this module stays torch-free (sweep workers use it)
    from pmq.experiment import Experiment
    from pmq.trace import TracedGemm

OBJECTIVES = {
    "size": "MB",
    "bops": "GBOPs",
    "latency": "ms",
    "energy": "uJ",
}
"""Objective → the unit totals are reported in (tables hold bytes, BOPs, seconds, pJ)."""
_TO_UNIT = {"size": 1e-6, "bops": 1e-9, "latency": 1e3, "energy": 1e-6}
HARDWARE_OBJECTIVES = ("latency", "energy")
FEASIBLE_RTOL = 1e-9
"""Slack of the feasible-range check: a budget summed in another order than the table still fits."""


def check_objective(objective: str, param: str = "objective") -> str:
    """``objective`` if it is one of ``OBJECTIVES``; ``param``: the argument it came in (for the error)."""
    if objective not in OBJECTIVES:
        raise PMQError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}", param=param)
    return objective


def bit_pairs(bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES) -> list[Bits]:
    return [Bits(w, a) for w, a in itertools.product(bit_choices, repeat=2)]


@dataclass
class CostTable:
    """cost[component][Bits] per objective in base units, plus the allocation-independent part."""

    per_choice: dict[str, dict[str, dict[Bits, float]]]  # objective → component → Bits → cost
    fixed: dict[str, float]  # objective → cost that no allocation changes

    def total(self, objective: str, allocation: BitAllocation) -> float:
        table = self.per_choice[objective]
        return self.fixed[objective] + sum(table[name][bits] for name, bits in allocation.items())

    def feasible_range(self, objective: str) -> tuple[float, float]:
        """Whole-model cost of the cheapest and of the dearest allocation (base units)."""
        table = self.per_choice[objective].values()
        return (self.fixed[objective] + sum(min(row.values()) for row in table),
                self.fixed[objective] + sum(max(row.values()) for row in table))

    def in_units(self, objective: str, value: float) -> float:
        return value * _TO_UNIT[objective]


def cost_table(costs: dict[str, TracedGemm], params_total: int, choices: Sequence[Bits],
               objectives: Sequence[str], workload: hwsim.Workload | None = None,
               accelerator: hwsim.Accelerator | None = None, variants: VariantTable | None = None) -> CostTable:
    """Price every component at every bit pair for each objective.

    ``workload`` (from :meth:`pmq.trace.ModelTrace.workload`) and ``accelerator`` are needed for
    latency/energy: each component's GEMM is priced at each bit pair as ``hwsim.estimate`` prices it,
    through :func:`hwsim.costtable.variant_table` (pass ``variants`` to reuse one already built).
    """
    per_choice: dict[str, dict[str, dict[Bits, float]]] = {}
    fixed: dict[str, float] = {}
    for objective in objectives:
        if objective == "size":
            from pmq.trace.graph import FLOAT_PARAM_BITS

            per_choice[objective] = {name: {b: c.weight_params * b.w / 8 for b in choices} for name, c in costs.items()}
            quantizable = sum(c.weight_params for c in costs.values() if c.kind != "matmul")
            fixed[objective] = (params_total - quantizable) * FLOAT_PARAM_BITS / 8
        elif objective == "bops":
            per_choice[objective] = {name: {b: c.macs * b.w * b.a for b in choices} for name, c in costs.items()}
            fixed[objective] = 0.0
        else:
            if variants is None:
                if workload is None or accelerator is None:
                    raise PMQError(f"objective {objective!r} needs an accelerator to price it: name a "
                                   "preset or a YAML file", param="accelerator")
                variants = variant_table(workload, costs, [pair_of(b) for b in choices], accelerator)
            per_choice[objective], fixed[objective] = _hardware_costs(variants, costs, choices, objective)
    return CostTable(per_choice, fixed)


def pair_of(bits: Bits) -> tuple[int, int]:
    """The (bits_a, bits_b) of a component's GEMM at ``bits`` (B holds the weights, or the second
    activation of a matmul, which the allocation's ``w`` sets too)."""
    return bits.a, bits.w


def _hardware_costs(variants: VariantTable, costs: Mapping[str, TracedGemm], choices: Sequence[Bits],
                    objective: str) -> tuple[dict[str, dict[Bits, float]], float]:
    def value(cost: hwsim.OpCost) -> float:
        return cost.latency_s if objective == "latency" else cost.energy_pj

    missing = [name for name in costs if name not in variants.rows]
    if missing:
        raise PMQError(f"component {sorted(missing)[0]!r} has no GEMM in the workload: pass the model's own trace")
    table = {name: {b: value(row[pair_of(b)]) for b in choices} for name, row in variants.rows.items() if name in costs}
    fixed = 0.0
    for cost in variants.fixed.values():  # workload order, as estimate_workload sums them
        fixed += value(cost)
    return table, fixed


def pareto_table(omega: Mapping[str, Mapping[Hashable, float]], costs: CostTable, objectives: Sequence[str]) -> dict[str, list[Choice]]:
    """The pareto module's input: per component, one Choice per bit pair with Ω and its costs."""
    return {
        name: [Choice(bits, omega[name][bits], {o: costs.per_choice[o][name][bits] for o in objectives})
               for bits in omega[name]]
        for name in omega
    }


def resolve_budget(costs: CostTable, objective: str, budget: str | float | Budget, component_names: Sequence[str],
                   *, base_cost: float | None = None, uniform_cost: Callable[[str], float] | None = None,
                   clamp_high: bool = False) -> float:
    """The budget in base units (bytes, BOPs, s, pJ), checked against the feasible whole-model range.

    ``uniform_cost`` prices ``0.5x:W8A8`` (default: from the table), ``base_cost`` is what ``0.8x`` is a
    multiple of; with ``clamp_high`` a budget above the dearest allocation is allowed (it selects it).
    """
    def uniform_total(setting: str) -> float:
        return costs.total(objective, BitAllocation.uniform(setting, component_names))

    parsed = Budget.parse(budget)
    value = parsed.resolve(uniform_cost or uniform_total, base_cost)
    lo, hi = costs.feasible_range(objective)
    unit, scale = OBJECTIVES[objective], _TO_UNIT[objective]
    example = "0.8x" if base_cost is not None else "0.5x:W8A8"
    feasible = f"use a budget in [{lo * scale:.6g}, {hi * scale:.6g}] {unit} (e.g. {example} or an absolute value)"
    if value < lo * (1 - FEASIBLE_RTOL):
        raise PMQError(f"budget {parsed.text} = {value * scale:.6g} {unit} is below the cheapest allocation "
                       f"({lo * scale:.6g} {unit}): {feasible}")
    if value > hi * (1 + FEASIBLE_RTOL) and not clamp_high:
        raise PMQError(f"budget {parsed.text} = {value * scale:.6g} {unit} is above the dearest allocation "
                       f"({hi * scale:.6g} {unit}), so it constrains nothing: {feasible}")
    return value


@dataclass
class SearchProblem:
    """One search, built once: Ω per component and choice, the cost table, the exact frontier.

    Every budget is then a lookup (:meth:`choose`): the demo, sweeps and benchmarks pick many
    allocations from one problem. Choice keys are opaque (``Bits`` here, (ρ, levels) patch-wise).
    ``base_cost``, ``uniform_cost`` and ``clamp_high`` are passed to :func:`resolve_budget`.
    """

    omega: Mapping[str, Mapping[Hashable, float]]
    costs: CostTable
    objectives: tuple[str, ...]
    frontier: Frontier
    base_cost: float | None = None
    uniform_cost: Callable[[str], float] | None = None
    clamp_high: bool = False

    @classmethod
    def build(cls, omega: Mapping[str, Mapping[Hashable, float]], costs: CostTable, objectives: Sequence[str],
              **options: Any) -> SearchProblem:
        """Ω and costs → the exact frontier over ``objectives`` (the first one is budgeted)."""
        objectives = tuple(objectives)
        return cls(omega, costs, objectives, frontier(pareto_table(omega, costs, objectives), objectives), **options)

    @property
    def objective(self) -> str:
        return self.objectives[0]

    def resolve(self, budget: str | float | Budget) -> float:
        """The whole-model budget in base units, checked against the feasible range."""
        return resolve_budget(self.costs, self.objective, budget, list(self.omega), base_cost=self.base_cost,
                              uniform_cost=self.uniform_cost, clamp_high=self.clamp_high)

    def point(self, budget: str | float | Budget) -> FrontierPoint:
        """The least-Ω frontier point whose whole-model cost (fixed part included) fits ``budget``."""
        front = self.frontier
        within = min(max(self.resolve(budget) - self.costs.fixed[self.objective], front.cost_min[0]),
                     front.cost_max[0])
        return front.best_under(within)

    def choose(self, budget: str | float | Budget) -> BitAllocation:
        """The least-Ω allocation under ``budget`` (text as in :mod:`pmq.budget`, or base units)."""
        return BitAllocation(dict(self.point(budget).allocation))

    def omega_of(self, allocation: Mapping[str, Hashable]) -> float:
        """Σ Ω of an allocation, summed in component order (the search's own sum)."""
        return sum(self.omega[name][key] for name, key in allocation.items())


@dataclass
class SearchResult:
    """The chosen allocation, the frontier and cost table it came from, and its summary record."""

    allocation: BitAllocation
    frontier: Frontier
    costs: CostTable
    summary: SearchSummary


class ModelSearch:
    """The model side of the search, prepared once: the W8A8 workload priced into one cost table for
    every objective, Ω per metric (computed once, then cached) and one :class:`SearchProblem` per
    (metric, objectives); :meth:`run` evaluates and simulates the allocation a budget picks."""

    def __init__(self, experiment: Experiment, accelerator: hwsim.Accelerator, objectives: Sequence[str],
                 bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES,
                 sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES, progress: bool = True) -> None:
        self.experiment, self.accelerator, self.progress = experiment, accelerator, progress
        self.bit_choices, self.sensitivity_images = tuple(bit_choices), sensitivity_images
        self.choices = bit_pairs(bit_choices)
        objectives = list(dict.fromkeys(check_objective(o) for o in objectives))
        workload = experiment.trace.workload(BitAllocation.uniform("W8A8", experiment.component_names))
        self.costs = cost_table(experiment.costs, experiment.trace.params_total, self.choices, objectives, workload,
                                accelerator)
        self._problems: dict[tuple[str, tuple[str, ...]], SearchProblem] = {}
        self.sensitivity_s: dict[str, float] = {}

    def problem(self, metric: str, objectives: Sequence[str]) -> SearchProblem:
        key = (metric, tuple(objectives))
        if key not in self._problems:
            from pmq.sensitivity import compute_sensitivity

            images, labels = self.experiment.calibration_set
            n = self.sensitivity_images
            sensitivity = compute_sensitivity(self.experiment.qv, images[:n], labels[:n], metric=metric,
                                              bits=self.bit_choices, progress=self.progress)
            self.sensitivity_s[metric] = sensitivity.wall_time_s
            omega = {name: {b: sensitivity.omega(name, b) for b in self.choices}
                     for name in self.experiment.component_names}
            self._problems[key] = SearchProblem.build(omega, self.costs, objectives)
        return self._problems[key]

    def run(self, metric: str, objectives: Sequence[str], budget: str, limit: int | None = None) -> SearchResult:
        """The allocation ``budget`` picks on the (metric, objectives) frontier, evaluated and simulated."""
        objective = objectives[0]
        resolve_budget(self.costs, objective, budget, self.experiment.component_names)  # fail before any pass
        problem = self.problem(metric, objectives)
        budget_base = problem.resolve(budget)
        allocation = problem.choose(budget_base)
        experiment, accelerator = self.experiment, self.accelerator
        evaluated = experiment.evaluate(allocation, limit, progress=self.progress)
        simulated = hwsim.simulate(experiment.trace.workload(allocation), accelerator)
        allocation.metadata.update({"metric": metric, "objective": objective, "budget": budget,
                                    "model": experiment.loaded.tag, "accelerator": accelerator.name})
        summary = SearchSummary(
            model=experiment.loaded.name, model_tag=experiment.loaded.tag, data=experiment.source.describe(),
            metric=metric, objective=objective,
            second_objective=objectives[1] if len(objectives) > 1 else None, budget=budget,
            budget_value=self.costs.in_units(objective, budget_base), budget_unit=OBJECTIVES[objective],
            bit_choices=list(self.bit_choices), frontier_points=len(problem.frontier),
            sensitivity_s=self.sensitivity_s[metric], omega=problem.omega_of(allocation),
            measured=Measurement(evaluated.top1, evaluated.images, evaluated.size_mb, evaluated.gbops,
                                 simulated.latency_s, simulated.energy_pj, simulated.cycles),
            accelerator=accelerator.name, accelerator_config=accelerator.config)
        return SearchResult(allocation, problem.frontier, self.costs, summary)


def run_search(experiment: Experiment, accelerator: hwsim.Accelerator, objective: str, budget: str,
               metric: str = "pmq", bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES,
               second_objective: str | None = None, sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES,
               limit: int | None = None, progress: bool = True) -> SearchResult:
    """Sensitivity → cost tables → frontier → chosen allocation, evaluated and simulated."""
    objectives = [check_objective(objective)]
    if second_objective:
        objectives.append(check_objective(second_objective, "second_objective"))
    search = ModelSearch(experiment, accelerator, objectives, bit_choices, sensitivity_images, progress)
    return search.run(metric, objectives, budget, limit)
