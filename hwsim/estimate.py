"""Closed-form cost of an op or a whole workload (no event queue): the fast path for cost tables."""

from __future__ import annotations

from hwsim import token_groups, tokens
from hwsim.accelerator import Accelerator
from hwsim.cost import cost_plan, grouped_gemm_cost, vector_cost
from hwsim.mapper import DEFAULT_MAPPER, Mapper, SearchMapper, mapped_cost
from hwsim.pipeline import pipeline_cycles
from hwsim.plan import plan_vector
from hwsim.result import OpCost, SimResult
from hwsim.workload import Gemm, Op, VectorOp, Workload


def estimate(op: Op, accel: Accelerator, mapper: Mapper | None = None) -> OpCost:
    """Cost of one op in closed form: the plan ``mapper`` picks (default: the search mapper, by
    cycles), run lock-step through the pipeline exactly as ``simulate`` runs it, so cycles agree.
    A grouped (patch-wise) GEMM is the sum of its sub-GEMMs, as in ``simulate`` (one mappable unit on a
    token-aware preset, see :mod:`hwsim.token_groups`)."""
    mapper = DEFAULT_MAPPER if mapper is None else mapper
    if tokens.handles(op, accel):
        return token_groups.estimate_token_op(op, accel, getattr(mapper, "objective", "cycles"))
    if isinstance(op, Gemm) and op.grouped:
        merge = op.merge_op()
        parts = [estimate(part, accel, mapper) for part in op.parts()]
        parts += [estimate(merge, accel, mapper)] if merge else []
        return grouped_gemm_cost(op, accel, parts)
    if isinstance(op, Gemm):
        if isinstance(mapper, SearchMapper):  # the search already costed its pick exactly
            return mapped_cost(op, accel, mapper.objective)
        return cost_plan(mapper.plan(op, accel), accel)
    if isinstance(op, VectorOp):
        plan = plan_vector(op, accel)
        steps = plan.steps(accel)
        return vector_cost(plan, accel, pipeline_cycles(steps, accel), int(steps.compute.sum()))
    raise TypeError(f"estimate takes a hwsim.Gemm or hwsim.VectorOp, got {type(op).__name__}")


def estimate_workload(workload: Workload, accel: Accelerator, mapper: Mapper | None = None) -> SimResult:
    """Closed-form costs of every op, run one after another (the same schedule as ``simulate``)."""
    return SimResult(accel, [estimate(op, accel, mapper) for op in workload.ops], method="estimate")
