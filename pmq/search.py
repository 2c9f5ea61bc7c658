"""The PMQ search: sensitivity Ω per choice + cost per choice → exact Pareto frontier → allocation.

Costs per component and bit pair come from the model's trace (size, BOPs) or from ``hwsim.estimate``
on its workload (latency, energy on a chosen accelerator). Ops that no allocation
changes (LayerNorm, softmax, residual adds, biases and norms in the size) form a fixed cost that is
added to every total, so budgets and reported numbers are whole-model figures.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import hwsim
from pmq.allocation import BitAllocation, Bits
from pmq.errors import PMQError
from pmq.pareto import Choice, Frontier, frontier, parse_budget

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
DEFAULT_BIT_CHOICES = (2, 3, 4, 6, 8)
HARDWARE_OBJECTIVES = ("latency", "energy")


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise PMQError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
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
               accelerator: hwsim.Accelerator | None = None) -> CostTable:
    """Price every component at every bit pair for each objective.

    ``workload`` (from :meth:`pmq.trace.ModelTrace.workload`) and ``accelerator`` are needed for
    latency/energy: each component's GEMM is re-estimated at each bit pair with ``hwsim.estimate``.
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
            if workload is None or accelerator is None:
                raise PMQError(f"objective {objective!r} needs an accelerator: pass --accelerator NAME|YAML")
            per_choice[objective], fixed[objective] = _hardware_costs(workload, accelerator, costs, choices, objective)
    return CostTable(per_choice, fixed)


def _hardware_costs(workload: hwsim.Workload, accelerator: hwsim.Accelerator, costs: dict[str, TracedGemm],
                    choices: Sequence[Bits], objective: str) -> tuple[dict[str, dict[Bits, float]], float]:
    def value(cost: hwsim.OpCost) -> float:
        return cost.latency_s if objective == "latency" else cost.energy_pj

    table: dict[str, dict[Bits, float]] = {}
    fixed = 0.0
    for op in workload.ops:
        if isinstance(op, hwsim.Gemm) and op.name in costs:
            table[op.name] = {b: value(hwsim.estimate(dataclasses.replace(op, bits_a=b.a, bits_b=b.w), accelerator))
                              for b in choices}
        else:
            fixed += value(hwsim.estimate(op, accelerator))
    missing = set(costs) - set(table)
    if missing:
        raise PMQError(f"component {sorted(missing)[0]!r} has no GEMM in the workload: pass the model's own trace")
    return table, fixed


def pareto_table(omega: dict[str, dict[Bits, float]], costs: CostTable, objectives: Sequence[str]) -> dict[str, list[Choice]]:
    """The pareto module's input: per component, one Choice per bit pair with Ω and its costs."""
    return {
        name: [Choice(bits, omega[name][bits], {o: costs.per_choice[o][name][bits] for o in objectives})
               for bits in omega[name]]
        for name in omega
    }


def resolve_budget(costs: CostTable, objective: str, budget_text: str, component_names: Sequence[str]) -> float:
    """The budget in base units (bytes, BOPs, s, pJ), checked against the feasible whole-model range."""
    def uniform_total(setting: str) -> float:
        return costs.total(objective, BitAllocation.uniform(setting, component_names))

    budget = parse_budget(budget_text, uniform_total)
    lo, hi = costs.feasible_range(objective)
    unit, scale = OBJECTIVES[objective], _TO_UNIT[objective]
    feasible = f"use a budget in [{lo * scale:.6g}, {hi * scale:.6g}] {unit} (e.g. 0.5x:W8A8 or an absolute value)"
    if budget < lo * (1 - 1e-9):
        raise PMQError(f"budget {budget_text} = {budget * scale:.6g} {unit} is below the cheapest allocation "
                       f"({lo * scale:.6g} {unit}): {feasible}")
    if budget > hi * (1 + 1e-9):
        raise PMQError(f"budget {budget_text} = {budget * scale:.6g} {unit} is above the dearest allocation "
                       f"({hi * scale:.6g} {unit}), so it constrains nothing: {feasible}")
    return budget


def choose(front: Frontier, costs: CostTable, objective: str, budget: float) -> BitAllocation:
    """The least-Ω allocation on the frontier whose whole-model cost fits ``budget`` (base units)."""
    within = min(max(budget - costs.fixed[objective], front.cost_min[0]), front.cost_max[0])
    return BitAllocation(dict(front.best_under(within).allocation))


@dataclass
class SearchResult:
    allocation: BitAllocation
    frontier: Frontier
    costs: CostTable
    summary: dict


def run_search(experiment: Experiment, accelerator: hwsim.Accelerator, objective: str, budget: str,
               metric: str = "pmq", bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES,
               second_objective: str | None = None, sensitivity_images: int = 64,
               limit: int | None = None, progress: bool = True) -> SearchResult:
    """Sensitivity → cost tables → frontier → chosen allocation, evaluated and simulated."""
    from pmq.sensitivity import compute_sensitivity

    objectives = [check_objective(objective)] + ([check_objective(second_objective)] if second_objective else [])
    choices = bit_pairs(bit_choices)
    names = experiment.component_names
    workload = experiment.trace.workload(BitAllocation.uniform("W8A8", names))
    costs = cost_table(experiment.costs, experiment.trace.params_total, choices, objectives, workload, accelerator)
    budget_base = resolve_budget(costs, objectives[0], budget, names)  # fail fast, before any pass
    images, labels = experiment.calibration_set
    sensitivity = compute_sensitivity(experiment.qv, images[:sensitivity_images], labels[:sensitivity_images],
                                      metric=metric, bits=tuple(bit_choices), progress=progress)
    omega = {name: {b: sensitivity.omega(name, b) for b in choices} for name in names}
    front = frontier(pareto_table(omega, costs, objectives), objectives)
    allocation = choose(front, costs, objectives[0], budget_base)
    evaluated = experiment.evaluate(allocation, limit, progress=progress)
    simulated = hwsim.simulate(experiment.trace.workload(allocation), accelerator)
    allocation.metadata.update({"metric": metric, "objective": objective, "budget": budget,
                                "model": experiment.loaded.tag, "accelerator": accelerator.name})
    summary = {
        "model": experiment.loaded.name, "model_tag": experiment.loaded.tag, "data": experiment.source.describe(),
        "metric": metric, "objective": objective, "second_objective": second_objective,
        "budget": budget, f"budget_{OBJECTIVES[objective]}": costs.in_units(objective, budget_base),
        "bit_choices": list(bit_choices), "frontier_points": len(front),
        "sensitivity_s": sensitivity.wall_time_s, "omega": sum(omega[n][allocation[n]] for n in names),
        "top1": evaluated.top1, "images": evaluated.images, "size_mb": evaluated.size_mb, "gbops": evaluated.gbops,
        "latency_s": simulated.latency_s, "energy_pj": simulated.energy_pj, "cycles": simulated.cycles,
        "accelerator": accelerator.name, "accelerator_config": accelerator.config,
    }
    return SearchResult(allocation, front, costs, summary)
