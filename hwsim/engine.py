"""Tile-level event-driven simulation with simpy.

Per op, the compute unit (PE array for GEMMs, vector unit for vector ops) and one DRAM channel
(a FIFO ``simpy.Resource``) work through the op's tiles lock-step, double-buffered: the first
tile is fetched, then while the unit computes tile i the channel fetches tile i+1's new inputs
and writes back what tile i−1 finished (partial sums spilled or outputs), and tile i+1 starts
when both are done; after the last tile its results are written back. Which tiles, in which
order, moving which bits, is the plan a mapper picks (:mod:`hwsim.mapper`), the same plan
``hwsim.estimate`` costs in closed form, so both report the same cycles.

A grouped GEMM (patch-wise token groups at their own bits) runs as its sub-GEMMs one after
another, each through its own pipeline, then the merge of depth-group partial outputs.

Ops run one at a time in a topological order of the DAG (an op starts when its predecessors
and the op before it have finished). A ViT is a chain, so little is lost, and per-op costs
stay well defined: every workload total is the sum of its per-op rows.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import simpy

from hwsim import token_groups, tokens
from hwsim.accelerator import Accelerator
from hwsim.cost import gemm_cost, grouped_gemm_cost, vector_cost
from hwsim.mapper import DEFAULT_MAPPER, Mapper
from hwsim.pipeline import Steps
from hwsim.plan import plan_vector
from hwsim.result import OpCost, SimResult
from hwsim.workload import Gemm, Op, VectorOp, Workload


def _pipeline(env: simpy.Environment, dram: simpy.Resource, accel: Accelerator, steps: Steps):
    """Run ``steps`` ``repeat`` times through the load → compute → store pipeline; return busy cycles.

    A channel priced in ticks finer than a cycle (``dram.transfer_bits`` below one beat) moves in
    exact fractions of a cycle; the op then ends on the next whole cycle."""
    tick = accel.dram.ticks_per_cycle

    def duration(ticks) -> int | Fraction:
        return int(ticks) if tick == 1 else Fraction(int(ticks), tick)

    n = len(steps.compute)
    loads = [duration(t) for t in accel.dram.ticks(np.tile(steps.load_bits, steps.repeat))]
    stores = [duration(t) for t in accel.dram.ticks(np.tile(steps.store_bits, steps.repeat))]
    compute = [int(c) for c in np.tile(steps.compute, steps.repeat)]
    stalls = [0] * len(compute) if steps.stall is None else [int(c) for c in np.tile(steps.stall, steps.repeat)]

    def channel(bits_cycles):
        """The DRAM channel's work during one step: fetch the next tile, then write back the previous."""
        turn = dram.request()
        yield turn
        yield env.timeout(bits_cycles)
        dram.release(turn)

    yield env.process(channel(loads[0]))
    for i, busy in enumerate(compute):
        if stalls[i]:  # the step waits on a reference's own ports before it computes
            yield env.timeout(stalls[i])
        transfer = (loads[i + 1] if i + 1 < len(compute) else 0) + (stores[i - 1] if i > 0 else 0)
        if transfer:
            yield env.all_of([env.timeout(busy), env.process(channel(transfer))])
        else:
            yield env.timeout(busy)
    yield env.process(channel(stores[-1]))
    yield env.timeout(math.ceil(env.now) - env.now)
    return sum(compute[:n]) * steps.repeat


def simulate_op(env: simpy.Environment, dram: simpy.Resource, op: Op, accel: Accelerator,
                mapper: Mapper = DEFAULT_MAPPER):
    """simpy process: run one op with the plan ``mapper`` picks, return its :class:`OpCost`."""
    start = env.now
    if tokens.handles(op, accel):  # a grouped GEMM or token vector op on a token-aware preset
        if isinstance(op, Gemm):
            plan = token_groups.plan_grouped(op, accel, getattr(mapper, "objective", "cycles"))
            busy = yield from _pipeline(env, dram, accel, plan.steps(accel))
            return token_groups.grouped_cost(plan, accel, int(env.now - start), busy)
        steps = token_groups.vector_steps(op, accel)
        busy = (yield from _pipeline(env, dram, accel, steps)) if steps is not None else 0
        return token_groups.vector_op_cost(op, accel, steps, int(env.now - start), busy)
    if isinstance(op, Gemm) and op.grouped:  # row groups etc.: sub-GEMMs back to back, each at its own bits
        merge = op.merge_op()
        parts = []
        for part in op.parts() + ([merge] if merge else []):
            parts.append((yield from simulate_op(env, dram, part, accel, mapper)))
        return grouped_gemm_cost(op, accel, parts)
    if isinstance(op, Gemm):
        plan = mapper.plan(op, accel)
        busy = yield from _pipeline(env, dram, accel, plan.steps(accel))
        return gemm_cost(plan, accel, int(env.now - start), busy)
    if isinstance(op, VectorOp):
        plan = plan_vector(op, accel)
        busy = yield from _pipeline(env, dram, accel, plan.steps(accel))
        return vector_cost(plan, accel, int(env.now - start), busy)
    raise TypeError(f"simulate takes hwsim.Gemm or hwsim.VectorOp ops, got {type(op).__name__}")


def simulate(workload: Workload, accel: Accelerator, mapper: Mapper | None = None) -> SimResult:
    """Event-driven simulation of ``workload`` on ``accel`` with the plans ``mapper`` picks
    (default: the search mapper, by cycles); exact integer cycles."""
    mapper = DEFAULT_MAPPER if mapper is None else mapper
    env = simpy.Environment()
    dram = simpy.Resource(env, capacity=1)
    rows: list[OpCost] = []

    def run_all():
        for op in workload.ops:
            row = yield env.process(simulate_op(env, dram, op, accel, mapper))
            rows.append(row)

    env.process(run_all())
    env.run()
    return SimResult(accel, rows, method="simulate")
