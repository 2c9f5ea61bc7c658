"""Closed-form cost of an op or a whole workload (no event queue): the fast path for cost tables."""

from __future__ import annotations

from hwsim import reference
from hwsim.accelerator import Accelerator
from hwsim.cost import gemm_cost, grouped_gemm_cost, vector_cost
from hwsim.result import OpCost, SimResult
from hwsim.tiling import gemm_transfers, pipeline_cycles, plan_gemm, plan_vector, vector_transfers
from hwsim.workload import Gemm, Op, VectorOp, Workload


def estimate(op: Op, accel: Accelerator, mapping: str = "search") -> OpCost:
    """Cost of one op in closed form (no event queue): the same plan and tiles as ``simulate``,
    with compute cycles exact and the pipeline time from :func:`hwsim.tiling.pipeline_cycles`.
    A grouped (patch-wise) GEMM is the sum of its sub-GEMMs, as in ``simulate``. ``mapping``:
    ``"search"`` (hwsim's tiler) or ``"reference"`` (the preset's reference simulator's mapping)."""
    reference.check_mapping(mapping, accel)
    if isinstance(op, Gemm) and op.grouped:
        merge = op.merge_op()
        parts = [estimate(part, accel, mapping) for part in op.parts()]
        parts += [estimate(merge, accel, mapping)] if merge else []
        return grouped_gemm_cost(op, accel, parts)
    if isinstance(op, Gemm) and mapping == "reference":
        plan = reference.reference_plan(op, accel)
        steps = reference.transfers(plan, accel)
        return reference.cost(plan, accel, pipeline_cycles(steps, op.count, accel),
                              op.count * sum(s.compute for s in steps))
    if isinstance(op, Gemm):
        plan = plan_gemm(op, accel)
        steps = gemm_transfers(plan, accel)
        return gemm_cost(plan, accel, pipeline_cycles(steps, op.count, accel), op.count * sum(s.compute for s in steps))
    if isinstance(op, VectorOp):
        plan = plan_vector(op, accel)
        steps = vector_transfers(plan, accel)
        return vector_cost(plan, accel, pipeline_cycles(steps, 1, accel), sum(s.compute for s in steps))
    raise TypeError(f"estimate takes a hwsim.Gemm or hwsim.VectorOp, got {type(op).__name__}")


def estimate_workload(workload: Workload, accel: Accelerator, mapping: str = "search") -> SimResult:
    """Closed-form costs of every op, run one after another (the same schedule as ``simulate``)."""
    return SimResult(accel, [estimate(op, accel, mapping) for op in workload.ops], method="estimate")
