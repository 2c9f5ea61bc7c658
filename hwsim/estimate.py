"""Closed-form cost of an op or a whole workload (no event queue): the fast path for cost tables."""

from __future__ import annotations

from hwsim import token_groups, tokens
from hwsim.accelerator import Accelerator
from hwsim.cost import gemm_cost, grouped_gemm_cost, vector_cost
from hwsim.result import OpCost, SimResult
from hwsim.tiling import gemm_transfers, pipeline_cycles, plan_gemm, plan_vector, vector_transfers
from hwsim.workload import Gemm, Op, VectorOp, Workload


def estimate(op: Op, accel: Accelerator) -> OpCost:
    """Cost of one op in closed form (no event queue): the same plan and tiles as ``simulate``,
    with compute cycles exact and the pipeline time from :func:`hwsim.tiling.pipeline_cycles`.
    A grouped (patch-wise) GEMM is the sum of its sub-GEMMs, as in ``simulate`` (one mappable unit on a
    token-aware preset, see :mod:`hwsim.tokens`)."""
    if tokens.handles(op, accel):
        if isinstance(op, Gemm):
            plan = token_groups.plan_grouped(op, accel)
            steps = token_groups.grouped_transfers(plan, accel)
            return token_groups.grouped_cost(plan, accel, pipeline_cycles(steps, op.count, accel),
                                       op.count * sum(s.compute for s in steps))
        steps = token_groups.vector_transfers(op, accel)
        cycles = pipeline_cycles(steps, 1, accel) if steps else 0
        return token_groups.vector_op_cost(op, accel, steps, cycles, sum(s.compute for s in steps))
    if isinstance(op, Gemm) and op.grouped:
        merge = op.merge_op()
        parts = [estimate(part, accel) for part in op.parts()] + ([estimate(merge, accel)] if merge else [])
        return grouped_gemm_cost(op, accel, parts)
    if isinstance(op, Gemm):
        plan = plan_gemm(op, accel)
        steps = gemm_transfers(plan, accel)
        return gemm_cost(plan, accel, pipeline_cycles(steps, op.count, accel), op.count * sum(s.compute for s in steps))
    if isinstance(op, VectorOp):
        plan = plan_vector(op, accel)
        steps = vector_transfers(plan, accel)
        return vector_cost(plan, accel, pipeline_cycles(steps, 1, accel), sum(s.compute for s in steps))
    raise TypeError(f"estimate takes a hwsim.Gemm or hwsim.VectorOp, got {type(op).__name__}")


def estimate_workload(workload: Workload, accel: Accelerator) -> SimResult:
    """Closed-form costs of every op, run one after another (the same schedule as ``simulate``)."""
    return SimResult(accel, [estimate(op, accel) for op in workload.ops], method="estimate")
