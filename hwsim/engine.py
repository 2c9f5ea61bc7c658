"""Tile-level event-driven simulation with simpy.

Per op, three processes share one DRAM channel (a FIFO ``simpy.Resource``):

* a loader fetches each tile's new inputs into a free slot of the double-buffered input
  buffers (2 slots) at ``dram.bandwidth_bits_per_cycle``;
* the compute unit (PE array for GEMMs, vector unit for vector ops) takes loaded tiles in
  order, holds an output slot (the output buffer is double-buffered too) while a block of
  partial sums accumulates, and is busy ``tile_cycles`` per tile;
* a writer per finished output block drains it to DRAM and frees its output slot.

A grouped GEMM (patch-wise token groups at their own bits) runs as its sub-GEMMs one after
another, each through its own pipeline, then the merge of depth-group partial outputs.

Ops run one at a time in a topological order of the DAG (an op starts when its predecessors
and the op before it have finished). A ViT is a chain, so little is lost, and per-op costs
stay well defined: every workload total is the sum of its per-op rows.
"""

from __future__ import annotations

import simpy

from hwsim import token_groups, tokens
from hwsim.accelerator import Accelerator
from hwsim.cost import gemm_cost, grouped_gemm_cost, vector_cost
from hwsim.result import OpCost, SimResult
from hwsim.tiling import gemm_transfers, plan_gemm, plan_vector, vector_transfers
from hwsim.workload import Gemm, Op, VectorOp, Workload

SLOTS = 2  # double buffering


def _pipeline(env: simpy.Environment, dram: simpy.Resource, accel: Accelerator, steps, repeat: int):
    """Run ``steps`` ``repeat`` times through the load → compute → store pipeline; return busy cycles.

    Double buffering as events: step i may load once step i−2 has finished computing (its
    input slot is free), and output block b may start once block b−2 has been written back.
    """
    bandwidth = accel.dram
    sequence = steps * repeat
    loaded = [env.event() for _ in sequence]
    computed = [env.event() for _ in sequence]
    stored: list[simpy.Event] = []

    def transfer(bits: int):
        turn = dram.request()
        yield turn
        yield env.timeout(bandwidth.cycles(bits))
        dram.release(turn)

    def loader():
        for i, step in enumerate(sequence):
            if i >= SLOTS:
                yield computed[i - SLOTS]
            if step.load_bits:
                yield from transfer(step.load_bits)
            loaded[i].succeed()

    def writer(bits: int, done: simpy.Event):
        yield from transfer(bits)
        done.succeed()

    def compute():
        busy = 0
        for i, step in enumerate(sequence):
            yield loaded[i]
            if step.opens_output and len(stored) >= SLOTS:
                yield stored[len(stored) - SLOTS]
            yield env.timeout(step.compute)
            busy += step.compute
            computed[i].succeed()
            if step.closes_output:
                stored.append(env.event())
                env.process(writer(step.store_bits, stored[-1]))
        yield env.all_of(stored)
        return busy

    env.process(loader())
    return (yield env.process(compute()))


def simulate_op(env: simpy.Environment, dram: simpy.Resource, op: Op, accel: Accelerator):
    """simpy process: run one op, return its :class:`OpCost`."""
    start = env.now
    if tokens.handles(op, accel):  # a grouped GEMM or token vector op on a token-aware preset
        if isinstance(op, Gemm):
            plan = token_groups.plan_grouped(op, accel)
            busy = yield from _pipeline(env, dram, accel, token_groups.grouped_transfers(plan, accel), op.count)
            return token_groups.grouped_cost(plan, accel, int(env.now - start), busy)
        steps = token_groups.vector_transfers(op, accel)
        busy = (yield from _pipeline(env, dram, accel, steps, 1)) if steps else 0
        return token_groups.vector_op_cost(op, accel, steps, int(env.now - start), busy)
    if isinstance(op, Gemm) and op.grouped:  # row groups etc.: sub-GEMMs back to back, each at its own bits
        merge = op.merge_op()
        parts = []
        for part in op.parts() + ([merge] if merge else []):
            parts.append((yield from simulate_op(env, dram, part, accel)))
        return grouped_gemm_cost(op, accel, parts)
    if isinstance(op, Gemm):
        plan = plan_gemm(op, accel)
        busy = yield from _pipeline(env, dram, accel, gemm_transfers(plan, accel), op.count)
        return gemm_cost(plan, accel, int(env.now - start), busy)
    if isinstance(op, VectorOp):
        plan = plan_vector(op, accel)
        busy = yield from _pipeline(env, dram, accel, vector_transfers(plan, accel), 1)
        return vector_cost(plan, accel, int(env.now - start), busy)
    raise TypeError(f"simulate takes hwsim.Gemm or hwsim.VectorOp ops, got {type(op).__name__}")


def simulate(workload: Workload, accel: Accelerator) -> SimResult:
    """Event-driven simulation of ``workload`` on ``accel`` (exact integer cycles)."""
    env = simpy.Environment()
    dram = simpy.Resource(env, capacity=1)
    rows: list[OpCost] = []

    def run_all():
        for op in workload.ops:
            row = yield env.process(simulate_op(env, dram, op, accel))
            rows.append(row)

    env.process(run_all())
    env.run()
    return SimResult(accel, rows, method="simulate")
