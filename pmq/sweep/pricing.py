"""Per-design pricing, torch-free (it runs on local worker processes or dask workers).

Per design: the cost table on that accelerator (:func:`hwsim.costtable.variant_table`: one mapper
search per distinct GEMM shape and precision), one :class:`pmq.search.SearchProblem`, and for each
budget the least-Ω allocation priced whole-model — assembled from the same table (equal to
``hwsim.estimate_workload``) or by ``hwsim.simulate`` — plus ``hwsim.area``. A design with a
patch-wise setting applies it to every block of the chosen allocation (the search picks the
component bits first) and prices the resulting grouped workload (``ModelTrace.workload``) whole.
Executors hand a task a batch of designs (:func:`price_designs`), so the workload and Ω travel once
per batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import accelerators
import hwsim
from hwsim.costtable import VariantTable, variant_table
from hwsim.errors import HwsimError
from pmq.allocation import BitAllocation, Bits
from pmq.errors import PMQError
from pmq.patchwise.spec import layer_names
from pmq.search import SearchProblem, cost_table, pair_of
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
        problem = SearchProblem.build(inputs.omega, costs, [objective])
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
            **_mean_bits(inputs.workload, allocation),
            allocation=allocation.to_dict()["components"],
        )
        if allocation.patchwise:
            row["patchwise"] = allocation.patchwise
    return rows


def price_designs(inputs: PricingInputs, designs: list[tuple[int, dict, dict | None]]) -> list[list[dict[str, Any]]]:
    """:func:`price_design` for a batch of ``(design id, config, patch-wise setting)``: one task's worth of work."""
    return [price_design(inputs, *design) for design in designs]


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


def _mean_bits(workload: hwsim.Workload, allocation: BitAllocation) -> dict[str, float]:
    """MAC-weighted mean weight and activation bits of the allocation."""
    gemms = [op for op in workload.ops if isinstance(op, hwsim.Gemm) and op.name in allocation.bits]
    macs = sum(op.macs for op in gemms)
    return {
        "mean_bits_w": sum(op.macs * allocation[op.name].w for op in gemms) / macs,
        "mean_bits_a": sum(op.macs * allocation[op.name].a for op in gemms) / macs,
    }

