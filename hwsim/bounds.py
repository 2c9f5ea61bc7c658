"""Lower bounds of the mapper's candidates: what a plan's exact cost can never go below.

The search (:mod:`hwsim.mapper`) costs candidates exactly in the order of these bounds and stops once
no bound is below the best exact cost, so a bound must never exceed the exact value, and the closer it
is the fewer candidates are costed. For cycles: compute plus the first load and the last store, or all
DRAM traffic plus the DRAM idle at the pipeline's two ends, whichever is more; for energy: the exact
energy but the static part, plus static power over the cycle bound. All bit variants of a shape and all
its candidates at once (numpy arrays ``(variants, candidates)``); what depends on the tile alone is
computed once per distinct tile.
"""

from __future__ import annotations

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.cost import PJ_PER_J, sram_pj
from hwsim.grid import Grid
from hwsim.pipeline import Variants
from hwsim.plan import gemm_metrics


def _idle_ends(ops, accel, tiles, spill: bool, first_load, out, psum, tables):
    """Channel ticks (:attr:`hwsim.Dram.ticks_per_cycle`) the DRAM channel must idle at the two ends of a
    plan's pipeline: the first step computes while only one step's fetch can overlap it, the last while
    only one write-back can (none of this when the whole op is one step). Per variant (rows) and distinct
    tile, for plans that keep partial sums on chip (``spill`` False) or spill them; ``first_load``: bits of
    the first step's operand tiles, ``out``: write-back bits per output (0 if on chip), per variant;
    ``psum``: partial-sum bits; ``tables``: :func:`hwsim.plan.tile_table` per variant."""
    op, array, dram = ops[0], accel.array, accel.dram
    counts = [ceil_div(dim, t) for dim, t in zip((op.m, op.k, op.n), tiles, strict=True)]
    whole = np.ones(len(counts[0]), dtype=bool)  # the last tile starts the streamed dimension
    for count, extent in zip(counts, array.extents(op), strict=True):
        if extent is None:
            whole &= count == 1
    single = counts[0] * counts[1] * counts[2] == 1
    overhead = np.array([[array.instance_overhead_cycles(one)] for one in ops])
    first = tables[:, 0, 0, 0, -1, :] + overhead  # a stream start (the only entry if starts cost alike)
    last = tables[:, 1, 1, 1, whole * (tables.shape[4] - 1), np.arange(len(whole))] + overhead * single
    mt, _, nt = tiles
    load = first_load + spill * mt * nt * psum
    store = mt * nt * np.maximum(out, spill * psum)
    tick = dram.ticks_per_cycle
    idle = np.maximum(first * tick - dram.ticks(load), 0) + np.maximum(last * tick - dram.ticks(store), 0)
    return np.where((op.count > 1) | ~single, idle, 0)


def _cycle_bounds(ops, accel: Accelerator, grid: Grid, spill, variants: Variants, compute):
    """Per variant (rows) and candidate, cycles the plan cannot beat: compute plus the first load and
    the last store, or all DRAM traffic plus the pipeline ends' idle DRAM, whichever is more. Only
    DRAM traffic depends on the loop order and partial-sum placement; the rest is computed per
    distinct tile. ``spill``: whether each candidate spills partial sums; ``compute``: one instance's
    compute cycles per variant and distinct tile."""
    op, channel, tick = ops[0], accel.dram, accel.dram.ticks_per_cycle
    sa, sb, so = (variants.widths[:, i:i + 1] for i in range(3))
    sp = accel.memory.psum_bits  # one width whatever the bits
    held_a, held_b, held_out = (variants.onchip[:, i:i + 1] for i in range(3))
    mt, kt, nt = grid.tiles
    first_load = np.where(held_a, 0, mt * kt * sa) + np.where(held_b, 0, kt * nt * sb)
    out = np.where(held_out, 0, so)
    last_store = (op.m - (ceil_div(op.m, mt) - 1) * mt) * (op.n - (ceil_div(op.n, nt) - 1) * nt) * out
    busy = channel.ticks(first_load) + op.count * compute * tick + channel.ticks(last_store)
    a_all, b_all = np.where(held_a, 0, op.m * op.k * sa), np.where(held_b, 0, op.k * op.n * sb)
    # (variants, candidates) arrays: updated in place (each one is as large as the whole grid)
    traffic = a_all * grid.fetches[0]
    np.copyto(traffic, a_all, where=variants.resident[:, 0:1])  # a resident operand is fetched once
    fetched_b = b_all * grid.fetches[1]
    np.copyto(fetched_b, b_all, where=variants.resident[:, 1:2])
    traffic += fetched_b
    traffic += op.m * op.n * out
    idle, index = _idle_ends(ops, accel, grid.tiles, False, first_load, out, sp, variants.tables), grid.tile
    if spill.any():  # spilled partial sums: written and re-read once per k-step but the last
        traffic += np.where(spill, 2 * op.m * op.n * sp * (ceil_div(op.k, grid.kt) - 1), 0)
        spilling = _idle_ends(ops, accel, grid.tiles, True, first_load, out, sp, variants.tables)
        idle = np.concatenate([idle, spilling], axis=1)
        index = grid.tile + len(grid.tiles[0]) * spill  # the spilling plans' idle ends follow the others'
    traffic *= op.count
    ticks = channel.ticks(traffic)
    ticks += idle[:, index]
    np.maximum(ticks, busy[:, grid.tile], out=ticks)
    return ticks if tick == 1 else -(-ticks // tick)  # whole cycles


def lower_bounds(ops, accel: Accelerator, objective: str, grid: Grid, spill, variants: Variants, terms):
    """Per variant (rows) and candidate, a value the exact objective never goes below, and its energy
    without the static part (exact: only static energy depends on the pipelined cycles; None for the
    cycles objective, which does not need it). ``terms``: :func:`hwsim.plan.variant_terms` (per variant
    and distinct tile)."""
    cycles = _cycle_bounds(ops, accel, grid, spill, variants, terms[0])
    if objective == "cycles":  # energy is not needed to rank plans
        return cycles, None
    op = ops[0]
    known = tuple(variants.widths[:, i:i + 1] for i in range(4))
    held = {x: variants.onchip[:, i:i + 1] for i, x in enumerate(("a", "b", "out"))}
    resident = {"a": variants.resident[:, 0:1], "b": variants.resident[:, 1:2]}
    metrics = gemm_metrics(op, accel, grid.mt, grid.kt, grid.nt, grid.pm, grid.pk, grid.pn, spill=spill,
                           resident=resident, onchip=held, widths=known, terms=tuple(t[:, grid.tile] for t in terms))
    dram = op.count * (metrics["dram_read"] + metrics["dram_write"])
    sram = {name.split("_")[-1]: op.count * value for name, value in metrics.items() if name.startswith("sram_read")}
    sram_written = {name.split("_")[-1]: op.count * value for name, value in metrics.items()
                    if name.startswith("sram_write")}
    mac_pj = np.array([[accel.array.mac_energy_pj(one)] for one in ops])
    energy = op.macs * mac_pj + sram_pj(accel, sram, sram_written) + dram * accel.dram.energy_pj_per_bit
    total = energy + accel.static_power_w * cycles / accel.clock_hz * PJ_PER_J
    return {"energy": total, "edp": total * cycles}[objective], energy
