"""Per-design pricing, torch-free (it runs on local worker processes or dask workers).

Per design: the cost table on that accelerator (:func:`hwsim.costtable.variant_table`: one mapper
search per distinct GEMM shape and precision), one :class:`pmq.search.SearchProblem` whose exact
frontier is cut to what the sweep's budgets need (:func:`budget_problem`), and for each budget the
least-Ω allocation priced whole-model — assembled from the same table (equal to
``hwsim.estimate_workload``) or by ``hwsim.simulate`` — plus ``hwsim.area``. A design with a
patch-wise setting applies it to every block of the chosen allocation (the search picks the
component bits first) and prices the resulting grouped workload (``ModelTrace.workload``) whole.
Executors hand a task a batch of designs (:func:`price_designs`); the inputs reach each worker once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

import accelerators
import hwsim
from hwsim.costtable import VariantTable, variant_table
from hwsim.errors import HwsimError
from pmq.allocation import BitAllocation, Bits
from pmq.errors import PMQError
from pmq.pareto import frontier
from pmq.patchwise.spec import layer_names
from pmq.search import CostTable, SearchProblem, cost_table, pair_of, pareto_table, resolve_budget
from pmq.trace.graph import ModelTrace


@dataclass(frozen=True)
class PricingInputs:
    """What every design needs, shipped to each worker once: Ω per component and bit pair, the
    model's trace (torch-free; its GEMMs are the components), the search settings."""

    component_names: tuple[str, ...]
    omega: dict[str, dict[Bits, float]]
    trace: ModelTrace
    objective: str
    budgets: tuple[str, ...]
    method: str = "estimate"

    @cached_property
    def workload(self) -> hwsim.Workload:
        """The model's workload at W8A8 (hardware costs per component are priced from it)."""
        return self.trace.workload(BitAllocation.uniform("W8A8", self.component_names))

    @cached_property
    def gemms(self) -> tuple[hwsim.Gemm, ...]:
        """The workload's GEMMs, listed once per worker (``Workload.ops`` sorts the graph each call)."""
        return tuple(op for op in self.workload.ops if isinstance(op, hwsim.Gemm))


def price_design(inputs: PricingInputs, design_id: int, config: dict,
                 patchwise: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per budget for one design: the chosen allocation and its latency, energy, EDP, area.

    ``patchwise`` (a :class:`pmq.sweep.space.Design`'s setting: rho, levels, score, apply_to) is
    applied to every block of each chosen allocation before it is priced.

    User-level failures (a TileError, a budget outside this design's range) become rows with
    ``status = "failed"`` and the error; anything else is a bug and propagates.
    """
    accel = accelerators.from_dict(config, source=config["name"])
    area = hwsim.area(accel).as_dict()
    names, objective = list(inputs.component_names), inputs.objective
    rows = [{"design": design_id, "budget": budget, "status": "ok", "error": "", **area}
            for budget in inputs.budgets]
    try:
        pairs = bit_pairs_of(inputs.omega)
        table = variant_table(inputs.workload, names, [pair_of(b) for b in pairs], accel)
        # hardware objectives read only the component names from the per-component costs
        costs = cost_table(dict.fromkeys(names), 0, pairs, [objective], variants=table)
        problem = budget_problem(inputs.omega, costs, objective, inputs.budgets)
    except (HwsimError, PMQError) as err:
        return [_failed(row, err) for row in rows]
    for row in rows:
        try:
            allocation = with_patchwise(problem.choose(row["budget"]), patchwise)
            result = _run(inputs, table, allocation)
        except (HwsimError, PMQError) as err:
            _failed(row, err)
            continue
        row.update(
            omega=math.fsum(inputs.omega[name][bits] for name, bits in allocation.items()),
            latency_s=result.latency_s,
            energy_pj=result.energy_pj,
            edp_js=result.latency_s * result.energy_pj * 1e-12,
            cycles=result.cycles,
            utilization=result.utilization,
            **_mean_bits(inputs.gemms, allocation),
            allocation=allocation.to_dict()["components"],
        )
        if allocation.patchwise:
            row["patchwise"] = allocation.patchwise
    return rows


def price_designs(inputs: PricingInputs, designs: list[tuple[int, dict, dict | None]]) -> list[list[dict[str, Any]]]:
    """:func:`price_design` for a batch of ``(design id, config, patch-wise setting)``: one task's worth of work."""
    return [price_design(inputs, *design) for design in designs]


def budget_problem(omega: Mapping[str, Mapping[Bits, float]], costs: CostTable, objective: str,
                   budgets: Sequence[str]) -> SearchProblem:
    """The search problem for these budgets only: the exact frontier DP, cut by :func:`budget_admit` to
    the states that can still become a budget's answer. ``choose`` then gives, for these budgets, what
    ``SearchProblem.build`` gives (tested); the frontier it holds is only that part."""
    names = list(omega)
    per_choice = [costs.per_choice[objective][name] for name in names]
    lowest, highest = sum(min(row.values()) for row in per_choice), sum(max(row.values()) for row in per_choice)
    limits = []  # as SearchProblem.point turns each budget into a frontier cost
    for budget in budgets:
        try:
            value = resolve_budget(costs, objective, budget, names)
        except PMQError:
            continue  # that budget's row fails with this error in choose()
        limits.append(min(max(value - costs.fixed[objective], lowest), highest))
    keys = [list(omega[name]) for name in names]
    admit = budget_admit([np.array([omega[name][b] for b in k]) for name, k in zip(names, keys, strict=True)],
                         [np.array([row[b] for b in k]) for row, k in zip(per_choice, keys, strict=True)], limits)
    front = frontier(pareto_table(omega, costs, [objective]), [objective], admit=admit)
    return SearchProblem(omega, costs, (objective,), front)


def budget_admit(omega: Sequence[np.ndarray], cost: Sequence[np.ndarray], limits: Sequence[float],
                 multipliers: int = 121) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray]:
    """A :func:`pmq.pareto.frontier` ``admit`` that keeps the partial allocations (components 0..t) some
    completion could make the least-Ω answer under one of ``limits`` (2-D: one cost).

    Per limit L: a Lagrangian relaxation (each component takes its least Ω + λ·cost, λ on a log grid)
    gives a feasible allocation, hence an upper bound U on the answer's Ω, and for that λ a lower
    bound on any completion: Ω + λ(c - L) + Σ_rest min(Ω + λ·cost). A state is dropped only when, for
    every limit, its cheapest completion costs more than L, or its least-Ω completion or that bound
    exceeds U, each by a relative 1e-9 (far above float rounding), so the answer's own partial
    allocations are always kept.
    """
    width = max(len(row) for row in omega)
    big_omega = np.full((len(omega), width), np.inf)  # padding is never the least of a row
    big_cost = np.zeros((len(omega), width))
    for t, (o, c) in enumerate(zip(omega, cost, strict=True)):
        big_omega[t, :len(o)], big_cost[t, :len(c)] = o, c
    scale = max(o.max() for o in omega) / max(max(c.max() for c in cost), 1e-300)
    lam = np.r_[0.0, np.geomspace(1e-6, 1e6, multipliers) * scale]
    relaxed = big_omega[None] + lam[:, None, None] * big_cost[None]  # (multiplier, component, choice)
    rows = np.arange(len(omega))
    pick = relaxed.argmin(axis=2)
    total_cost, total_omega = big_cost[rows, pick].sum(axis=1), big_omega[rows, pick].sum(axis=1)
    bounds = []
    for limit in limits:
        feasible = np.flatnonzero(total_cost <= limit * (1 - 1e-9))
        best = feasible[np.argmin(total_omega[feasible])] if len(feasible) else 0  # λ = 0: no Ω bound
        upper = total_omega[best] if len(feasible) else np.inf
        rest = _after_each(relaxed[best].min(axis=1))
        bounds.append((limit, limit * 1e-9, lam[best], upper, 1e-9 * (upper + lam[best] * limit + rest[0]), rest))
    cheapest, least = _after_each(np.array([c.min() for c in cost])), _after_each(np.array([o.min() for o in omega]))

    def admit(t: int, partial_omega: np.ndarray, partial_costs: np.ndarray) -> np.ndarray:
        c = partial_costs[:, 0]
        keep = np.zeros(len(c), dtype=bool)
        for limit, slack, lam_, upper, tolerance, rest in bounds:
            keep |= ((c + cheapest[t] <= limit + slack) & (partial_omega + least[t] <= upper + tolerance)
                     & (partial_omega + lam_ * (c - limit) + rest[t] <= upper + tolerance))
        return keep

    return admit


def _after_each(least: np.ndarray) -> np.ndarray:
    """``out[t]``: the sum of ``least`` over the components after ``t``."""
    return np.r_[np.cumsum(least[::-1])[::-1][1:], 0.0]


def with_patchwise(allocation: BitAllocation, setting: Mapping[str, Any] | None) -> BitAllocation:
    """``allocation`` with ``setting`` (rho, levels, score, apply_to) on every block; unchanged when
    there is none or it is the plain ρ = 1 (no levels)."""
    if not setting or "levels" not in setting:
        return allocation
    layer = {"rho": setting["rho"], "levels": setting["levels"]}
    patchwise = {"score": setting["score"], "apply_to": setting["apply_to"],
                 "layers": {name: dict(layer) for name in layer_names(allocation.bits)}}
    return BitAllocation(dict(allocation.bits), patchwise, dict(allocation.metadata))


def bit_pairs_of(omega: Mapping[str, Mapping[Bits, float]]) -> list[Bits]:
    """The bit pairs Ω is given for (the same for every component)."""
    return list(next(iter(omega.values())))


def _failed(row: dict, err: Exception) -> dict:
    row.update(status="failed", error=f"{type(err).__name__}: {err}")
    return row


def _run(inputs: PricingInputs, table: VariantTable, allocation: BitAllocation) -> hwsim.SimResult:
    """The whole model at ``allocation``: from the cost table's rows, or by event simulation."""
    if inputs.method == "simulate":
        return hwsim.simulate(inputs.trace.workload(allocation), table.accelerator)
    if allocation.patchwise:  # grouped GEMMs are not in the table: estimate the grouped workload whole
        return hwsim.estimate_workload(inputs.trace.workload(allocation), table.accelerator)
    return table.result({name: pair_of(bits) for name, bits in allocation.items()})


def _mean_bits(gemms: Sequence[hwsim.Gemm], allocation: BitAllocation) -> dict[str, float]:
    """MAC-weighted mean weight and activation bits of the allocation."""
    gemms = [op for op in gemms if op.name in allocation.bits]
    macs = sum(op.macs for op in gemms)
    return {
        "mean_bits_w": sum(op.macs * allocation[op.name].w for op in gemms) / macs,
        "mean_bits_a": sum(op.macs * allocation[op.name].a for op in gemms) / macs,
    }

