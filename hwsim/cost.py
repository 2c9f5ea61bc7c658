"""Turn a plan plus its cycle count into an :class:`OpCost` row: traffic, SRAM accesses, energy.

Traffic and energy depend only on the plan (the same for the event simulation and the
closed-form estimate); cycles come from either.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from hwsim.accelerator import BUFFERS, Accelerator
from hwsim.plan import VectorPlan, vector_energy_per_element
from hwsim.result import OpCost
from hwsim.workload import Gemm


class Plan(Protocol):
    """A GEMM mapping that can be costed: :class:`hwsim.GemmPlan`, or a reference simulator's replayed
    loop nest (:class:`hwsim.reference.plan.LoopNestPlan`)."""

    op: Gemm
    label: str

    def pipeline(self, accel: Accelerator) -> tuple[int, int]: ...

    def metrics(self, accel: Accelerator) -> dict[str, int]: ...

PJ_PER_J = 1e12


def _static_pj(accel: Accelerator, cycles: int) -> float:
    return accel.static_power_w * cycles / accel.clock_hz * PJ_PER_J


def sram_pj(accel: Accelerator, reads: dict, writes: dict):
    """SRAM energy of per-buffer bits read / written (ints or numpy arrays)."""
    energy = accel.sram_energy
    return sum(reads[b] * energy.read_pj_per_bit[b] + writes[b] * energy.write_pj_per_bit[b] for b in BUFFERS)


def cost_plan(plan: Plan, accel: Accelerator) -> OpCost:
    """Exact cost of a plan: its tiles run lock-step through the pipeline (what ``estimate`` reports and
    the event simulation reproduces, step by step)."""
    cycles, compute = plan.pipeline(accel)
    return gemm_cost(plan, accel, cycles, plan.op.count * compute)


def gemm_cost(plan: Plan, accel: Accelerator, cycles: int, compute_cycles: int,
              metrics: dict[str, int] | None = None) -> OpCost:
    """The row of a plan that runs ``cycles`` (``metrics``: the plan's :meth:`~Plan.metrics`, when already known)."""
    op, array = plan.op, accel.array
    count = op.count
    metrics = plan.metrics(accel) if metrics is None else metrics
    reads = {b: count * metrics[f"sram_read_{b}"] for b in BUFFERS}
    writes = {b: count * metrics[f"sram_write_{b}"] for b in BUFFERS}
    dram_read, dram_write = count * metrics["dram_read"], count * metrics["dram_write"]
    peak = array.peak_macs_per_cycle(op)
    return OpCost(
        name=op.name,
        kind=op.kind,
        count=count,
        bits_a=op.bits_a,
        bits_b=op.bits_b,
        tile=plan.label,
        cycles=cycles,
        compute_cycles=compute_cycles,
        stall_cycles=cycles - compute_cycles,
        utilization=op.macs / (cycles * peak),
        macs=op.macs,
        bops=op.bops,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=dram_read,
        dram_write_bits=dram_write,
        energy_mac_pj=op.macs * array.mac_energy_pj(op),
        energy_sram_pj=sram_pj(accel, reads, writes),
        energy_dram_pj=(dram_read + dram_write) * accel.dram.energy_pj_per_bit,
        energy_vector_pj=0.0,
        energy_static_pj=_static_pj(accel, cycles),
        latency_s=cycles / accel.clock_hz,
    )


def vector_cost(plan: VectorPlan, accel: Accelerator, cycles: int, compute_cycles: int) -> OpCost:
    op = plan.op
    load, store = op.elements * op.bits * plan.inputs, op.elements * op.bits
    reads = {"ifmap": load, "filter": 0, "ofmap": store}
    writes = {"ifmap": load, "filter": 0, "ofmap": store}
    if plan.onchip:  # the data stays in on-chip memory: no DRAM traffic
        load = store = 0
    return OpCost(
        name=op.name,
        kind=op.kind,
        count=1,
        bits_a=op.bits,
        bits_b=op.bits,
        tile=plan.label,
        cycles=cycles,
        compute_cycles=compute_cycles,
        stall_cycles=cycles - compute_cycles,
        utilization=compute_cycles / cycles,
        macs=0,
        bops=0,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=load,
        dram_write_bits=store,
        energy_mac_pj=0.0,
        energy_sram_pj=sram_pj(accel, reads, writes),
        energy_dram_pj=(load + store) * accel.dram.energy_pj_per_bit,
        energy_vector_pj=op.elements * vector_energy_per_element(op, accel),
        energy_static_pj=_static_pj(accel, cycles),
        latency_s=cycles / accel.clock_hz,
    )


_SUMMED = [f.name for f in dataclasses.fields(OpCost)
           if f.name not in ("name", "kind", "count", "bits_a", "bits_b", "tile", "utilization", "latency_s")]


def grouped_gemm_cost(op, accel: Accelerator, parts: list[OpCost]) -> OpCost:
    """One row for a grouped GEMM: the sum of its sub-GEMMs' rows (and the merge's, when depth-grouped).

    Utilisation is the GEMM's MACs over what the array could do in the same cycles, each part at
    its own bits (the merge counts at the nominal bits), so it stays comparable to ungrouped rows.
    """
    totals = {name: sum(getattr(part, name) for part in parts) for name in _SUMMED}
    capacity = sum(part.cycles * accel.array.peak_macs_per_cycle(sub)
                   for part, sub in zip(parts, [*op.parts(), op], strict=False))
    return OpCost(
        name=op.name,
        kind=op.kind,
        count=op.count,
        bits_a=op.bits_a,
        bits_b=op.bits_b,
        tile=f"{len(parts)} groups: " + " + ".join(part.tile for part in parts),
        utilization=op.macs / capacity,
        latency_s=totals["cycles"] / accel.clock_hz,
        **totals,
    )
