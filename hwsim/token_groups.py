"""Grouped GEMMs and token vector ops on a token-aware preset (one with a ``tokens`` section, see
:mod:`hwsim.tokens`): the mapping choices its capabilities open, and their exact cost.

A grouped GEMM is one mappable unit: the mapper's plan for the ungrouped GEMM fixes the tiles; tile
boundaries are aligned to the groups (a tile runs at one pair of bits); with ``shared_operand`` the
groups share one loop nest, so the plan's residency keeps an operand shared by several groups on chip
(else one nest per group combination, each fetching its operands); with ``grouped_reduction`` depth
groups accumulate in the output buffer (else a nest per depth group, partial outputs to DRAM, added by
the vector unit). Loop orders are ranked by the exact pipelined time (then DRAM bits) of the steps that
``simulate`` and ``estimate`` both run.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

from hwsim.accelerator import BUFFERS, Accelerator, ceil_div
from hwsim.cost import _sram_pj, _static_pj
from hwsim.result import OpCost
from hwsim.tiling import (
    ORDERS,
    Transfer,
    blocks,
    candidates,
    pipeline_cycles,
    plan_gemm,
    plan_vector,
    vector_rate,
)
from hwsim.tokens import capabilities
from hwsim.workload import Gemm, Groups, VectorOp

CANDIDATES = 12  # tile sizes tried per dimension (the tiler's largest first), besides the ungrouped plan's

Segment = tuple[int, int]  # (size, bits) of one token group along a dimension


@dataclass(frozen=True)
class Loop:
    """One loop nest of a grouped GEMM: its groups along m, k and n (run as one GEMM, tiles aligned to them)."""

    m: tuple[Segment, ...]
    k: tuple[Segment, ...]
    n: tuple[Segment, ...]


@dataclass(frozen=True)
class GroupedPlan:
    """A grouped GEMM as one mappable unit: tiles, loop order, and the loop nests it runs one after another."""

    op: Gemm
    mt: int
    kt: int
    nt: int
    order: str
    loops: tuple[Loop, ...]
    stored_a: int  # storage bits of a grouped operand's elements (the allocated width under requant on load)
    stored_b: int
    bits_out: int
    psum_bits: int
    requant: bool
    gather: bool
    merges: int  # depth groups whose partial outputs the vector unit adds (0 with grouped_reduction)

    @property
    def label(self) -> str:
        return f"{self.mt}x{self.kt}x{self.nt}/{self.order}, {len(self.loops)} loop(s)"


def _storage(plan: GroupedPlan, accel: Accelerator, bits: int, operand: str) -> int:
    """Bits one element occupies in SRAM/DRAM: the allocated width under requant on load, else its group's."""
    if plan.requant:
        return plan.stored_a if operand == "a" else plan.stored_b
    return accel.array.storage_bits(bits, operand)


def _segments(groups: Groups, size: int, bits: int) -> tuple[Segment, ...]:
    return tuple(groups) or ((size, bits),)


def _loops(op: Gemm, shared: bool, reduction: bool) -> tuple[Loop, ...]:
    """The loop nests: one for the whole GEMM when the groups share them, else one per group (combination)."""
    m = _segments(op.row_groups, op.m, op.bits_a)
    k = _segments(op.depth_groups, op.k, op.bits_b)
    n = _segments(op.col_groups, op.n, op.bits_b)
    outer = [(m, n)] if shared else [((row,), (col,)) for row in m for col in n]
    depth = [k] if reduction else [(seg,) for seg in k]
    return tuple(Loop(rows, ks, cols) for rows, cols in outer for ks in depth)


def _blocks(segments: tuple[Segment, ...], tile: int) -> list[tuple[int, int, bool]]:
    """(size, bits, first block of its group) along one dimension, tiles never crossing a group."""
    return [(size, bits, i == 0) for seg, bits in segments for i, size in enumerate(blocks(seg, min(tile, seg)))]


def plan_grouped(op: Gemm, accel: Accelerator) -> GroupedPlan:
    """The grouped GEMM's plan on a token-aware preset (cached per op shape, groups and preset)."""
    return dataclasses.replace(_plan_cached(dataclasses.replace(op, name="_"), accel), op=op)


@lru_cache(maxsize=2048)
def _plan_cached(op: Gemm, accel: Accelerator) -> GroupedPlan:
    """Rank tiles (the tiler's candidates, fitting the buffers at the operands' widest storage) × loop
    orders by the exact pipelined cycles, then DRAM bits, of the unit's own steps."""
    caps = capabilities(accel)
    nominal = plan_gemm(Gemm("_", op.m, op.k, op.n, op.bits_a, op.bits_b, op.count, op.kind, op.bits_out), accel)
    reduction = "grouped_reduction" in caps
    merges = 0 if reduction or len(op.depth_groups) < 2 else len(op.depth_groups) - 1
    base = GroupedPlan(op, nominal.mt, nominal.kt, nominal.nt, nominal.order,
                       _loops(op, "shared_operand" in caps, reduction), nominal.bits_a, nominal.bits_b,
                       nominal.bits_out, nominal.psum_bits, "requant_on_load" in caps, "gather_on_chip" in caps,
                       merges)
    gm, gk, gn = (min(g, dim) for g, dim in zip(accel.array.granules(op), (op.m, op.k, op.n), strict=True))
    cap_a, cap_b, cap_o = (accel.buffers.bits(name) // 2 for name in ("ifmap", "filter", "ofmap"))
    k_sizes = candidates(op.k, gk)
    tiles = {(nominal.mt, nominal.kt, nominal.nt)}
    for mt in candidates(op.m, gm)[:CANDIDATES]:
        for nt in candidates(op.n, gn)[:CANDIDATES]:
            kt = next((k for k in k_sizes if mt * k * nominal.bits_a <= cap_a and k * nt * nominal.bits_b <= cap_b),
                      None)
            if kt is not None and mt * nt * nominal.psum_bits <= cap_o:
                tiles.add((mt, kt, nt))
    scored = []
    for (mt, kt, nt), order in itertools.product(sorted(tiles), ORDERS):
        plan = dataclasses.replace(base, mt=mt, kt=kt, nt=nt, order=order)
        steps = grouped_transfers(plan, accel)
        scored.append((pipeline_cycles(steps, op.count, accel), sum(s.load_bits + s.store_bits for s in steps),
                       len(steps), plan.label, plan))
    return min(scored, key=lambda item: item[:4])[-1]


@dataclass(frozen=True)
class _Tile:
    """One tile of a loop nest, with what it fetches and whether it opens / closes an output block."""

    m: int
    k: int
    n: int
    bits_a: int
    bits_b: int
    load_a: bool
    load_b: bool
    first_k: bool
    last_k: bool
    stream_start: bool
    first: bool
    loop: Loop


def _tiles(plan: GroupedPlan, accel: Accelerator):
    """Every tile of one instance, loop nest after loop nest, in the plan's loop order with its reuse."""
    op, buffers = plan.op, accel.buffers
    depth = bool(op.depth_groups)
    streamed = [extent is None for extent in accel.array.extents(op)]
    for loop in plan.loops:
        mb, kb, nb = _blocks(loop.m, plan.mt), _blocks(loop.k, plan.kt), _blocks(loop.n, plan.nt)
        k_total = sum(size for size, _ in loop.k)
        a_bits = sum(rows * k_total * _storage(plan, accel, bits, "a") for rows, bits in loop.m)
        b_bits = sum(k_total * cols * _storage(plan, accel, bits, "b") for cols, bits in loop.n) if not depth else \
            sum(size * sum(c for c, _ in loop.n) * _storage(plan, accel, bits, "b") for size, bits in loop.k)
        a_resident, b_resident = a_bits <= buffers.bits("ifmap") // 2, b_bits <= buffers.bits("filter") // 2
        nm, nk, nn = len(mb), len(kb), len(nb)
        if plan.order == "nmk":  # as hwsim.tiling.GemmPlan: the operand of the outer loop stays through the middle one
            a_once, b_once = a_resident or nm * nk == 1, b_resident or nk == 1
            pairs = [(mb[im], nb[in_], im, in_) for in_ in range(nn) for im in range(nm)]
        else:
            a_once, b_once = a_resident or nk == 1, b_resident or nn * nk == 1
            pairs = [(mb[im], nb[in_], im, in_) for im in range(nm) for in_ in range(nn)]
        first = True
        for (m, bits_m, m_start), (n, bits_n, n_start), im, in_ in pairs:
            load_a = (in_ == 0) if a_once else True
            load_b = (im == 0) if b_once else True
            for j, (k, bits_k, k_start) in enumerate(kb):
                starts = (m_start, k_start, n_start)
                stream_start = all(start for start, s in zip(starts, streamed, strict=True) if s)
                yield _Tile(m, k, n, bits_m, bits_k if depth else bits_n, load_a, load_b, j == 0, j == nk - 1,
                            stream_start, first, loop)
                first = False


def _sub_op(op: Gemm, tile: _Tile) -> Gemm:
    """The ungrouped GEMM a tile belongs to: its loop's sizes at the tile's bits (what the PE model times)."""
    loop = tile.loop
    return _gemm(sum(s for s, _ in loop.m), sum(s for s, _ in loop.k), sum(s for s, _ in loop.n),
                 tile.bits_a, tile.bits_b, op.count, op.kind, op.out_bits)


@lru_cache(maxsize=4096)
def _gemm(*fields) -> Gemm:
    return Gemm("_", *fields)


def _merge(plan: GroupedPlan) -> VectorOp | None:
    """Per instance: the vector adds of depth groups' partial outputs when they cannot stay in the output buffer."""
    op = plan.op
    return VectorOp(f"{op.name}.merge", "add", plan.merges * op.m * op.n, op.out_bits) if plan.merges else None


def grouped_transfers(plan: GroupedPlan, accel: Accelerator) -> list[Transfer]:
    """The pipeline steps of one instance: every tile, then the merge of partial outputs (if any)."""
    op, array = plan.op, accel.array
    steps = []
    for tile in _tiles(plan, accel):
        sub = _sub_op(op, tile)
        load = (tile.m * tile.k * _storage(plan, accel, tile.bits_a, "a") if tile.load_a else 0) + \
            (tile.k * tile.n * _storage(plan, accel, tile.bits_b, "b") if tile.load_b else 0)
        compute = array.tile_cycles(tile.m, tile.k, tile.n, sub, stream_start=tile.stream_start) + \
            (array.instance_overhead_cycles(sub) if tile.first else 0)
        store = tile.m * tile.n * plan.bits_out if tile.last_k else 0
        steps.append(Transfer(load, compute, store, tile.first_k, tile.last_k))
    merge = _merge(plan)
    if merge is not None:
        vector = plan_vector(merge, accel)
        steps += [Transfer(2 * c * merge.bits, math.ceil(c * vector_rate(merge, accel) / accel.vector.lanes),
                           c * merge.bits, True, True) for c in vector.chunks]
    return steps


def _folds(size: int, extent: int | None) -> int:
    return ceil_div(size, extent) if extent else 1


def grouped_cost(plan: GroupedPlan, accel: Accelerator, cycles: int, compute_cycles: int) -> OpCost:
    """The grouped GEMM's row: traffic, SRAM accesses and energy summed tile by tile (all instances)."""
    op, array = plan.op, accel.array
    caps = capabilities(accel)
    reads, writes = dict.fromkeys(BUFFERS, 0), dict.fromkeys(BUFFERS, 0)
    dram_read = dram_write = 0
    mac_pj = token_pj = 0.0
    a_grouped, b_grouped = bool(op.row_groups), bool(op.col_groups or op.depth_groups)
    for tile in _tiles(plan, accel):
        sub = _sub_op(op, tile)
        em, ek, en = array.extents(sub)
        sa, sb = _storage(plan, accel, tile.bits_a, "a"), _storage(plan, accel, tile.bits_b, "b")
        a_in = tile.m * tile.k * sa if tile.load_a else 0
        b_in = tile.k * tile.n * sb if tile.load_b else 0
        passes = _folds(tile.k, ek)
        reads["ifmap"] += tile.m * tile.k * sa * _folds(tile.n, en)
        reads["filter"] += tile.k * tile.n * sb * _folds(tile.m, em)
        reads["ofmap"] += tile.m * tile.n * (plan.psum_bits * (passes - (1 if tile.first_k else 0))
                                             + (plan.bits_out if tile.last_k else 0))
        writes["ifmap"] += a_in
        writes["filter"] += b_in
        writes["ofmap"] += tile.m * tile.n * plan.psum_bits * passes
        dram_read += a_in + b_in
        dram_write += tile.m * tile.n * plan.bits_out if tile.last_k else 0
        mac_pj += tile.m * tile.k * tile.n * array.mac_energy_pj(sub)
        token_pj += _fetch_pj(plan, caps, op, tile, a_grouped, b_grouped)
    merge = _merge(plan)
    vector_pj = token_pj
    if merge is not None:
        load, store = 2 * merge.elements * merge.bits, merge.elements * merge.bits
        reads["ifmap"], writes["ifmap"] = reads["ifmap"] + load, writes["ifmap"] + load
        reads["ofmap"], writes["ofmap"] = reads["ofmap"] + store, writes["ofmap"] + store
        dram_read, dram_write = dram_read + load, dram_write + store
        vector_pj += merge.elements * accel.vector.energy_pj_per_element[merge.kind]
    count = op.count
    reads = {b: v * count for b, v in reads.items()}
    writes = {b: v * count for b, v in writes.items()}
    capacity = sum(_capacity(plan, accel))
    return OpCost(
        name=op.name, kind=op.kind, count=count, bits_a=op.bits_a, bits_b=op.bits_b, tile=plan.label,
        cycles=cycles, compute_cycles=compute_cycles, stall_cycles=cycles - compute_cycles,
        utilization=op.macs / (cycles * capacity) if cycles else 0.0, macs=op.macs, bops=op.bops,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=dram_read * count, dram_write_bits=dram_write * count,
        energy_mac_pj=mac_pj * count, energy_sram_pj=_sram_pj(accel, reads, writes),
        energy_dram_pj=(dram_read + dram_write) * count * accel.dram.energy_pj_per_bit,
        energy_vector_pj=vector_pj * count, energy_static_pj=_static_pj(accel, cycles),
        latency_s=cycles / accel.clock_hz,
    )


def _capacity(plan: GroupedPlan, accel: Accelerator):
    """Peak MACs per cycle weighted by each tile's share of the MACs (utilisation at each tile's own bits)."""
    total = plan.op.m * plan.op.k * plan.op.n
    for tile in _tiles(plan, accel):
        yield accel.array.peak_macs_per_cycle(_sub_op(plan.op, tile)) * tile.m * tile.k * tile.n / total


def _fetch_pj(plan: GroupedPlan, caps: dict, op: Gemm, tile: _Tile, a_grouped: bool, b_grouped: bool) -> float:
    """Energy of the on-chip token hardware for one tile's fetches: index reads and load-path requantization."""
    energy = 0.0
    for grouped, loaded, rows, elements, bits, nominal in (
            (a_grouped, tile.load_a, tile.m, tile.m * tile.k, tile.bits_a, op.bits_a),
            (b_grouped, tile.load_b, tile.k if op.depth_groups else tile.n, tile.k * tile.n, tile.bits_b, op.bits_b)):
        if not (grouped and loaded):
            continue
        if plan.gather:
            energy += rows * caps["gather_on_chip"]["energy_pj_per_row"]
        if plan.requant and bits != nominal:
            energy += elements * caps["requant_on_load"]["energy_pj_per_element"]
    return energy


def vector_transfers(op: VectorOp, accel: Accelerator) -> list[Transfer]:
    """Steps of a token vector op on a token-aware preset (see the module docstring); [] when it moves nothing."""
    caps = capabilities(accel)
    plan = plan_vector(op, accel)
    compute = [math.ceil(c * vector_rate(op, accel) / accel.vector.lanes) for c in plan.chunks]
    if op.kind == "token_score" and "fused_score" in caps:  # reads the class row in the softmax pass
        return [Transfer(0, cycles, 0, True, True) for cycles in compute]
    if op.kind == "regroup" and "requant_on_load" in caps:
        if "gather_on_chip" in caps:
            return []
        return [Transfer(c * op.bits, 0, c * op.bits, True, True) for c in plan.chunks]  # DMA gather round trip
    return [Transfer(c * op.bits * plan.inputs, cycles, c * op.bits, True, True)
            for c, cycles in zip(plan.chunks, compute, strict=True)]


def vector_op_cost(op: VectorOp, accel: Accelerator, steps: list[Transfer], cycles: int, compute_cycles: int) -> OpCost:
    """The row of a token vector op run as ``steps``: DRAM and SRAM traffic of those steps, vector energy
    for the elements the vector unit itself processed."""
    load, store = sum(s.load_bits for s in steps), sum(s.store_bits for s in steps)
    vector_busy = compute_cycles > 0
    on_chip = op.elements * op.bits if vector_busy and not load else 0  # the fused score reads the output buffer
    reads = {"ifmap": load, "filter": 0, "ofmap": store + on_chip}
    writes = {"ifmap": load, "filter": 0, "ofmap": store}
    return OpCost(
        name=op.name, kind=op.kind, count=1, bits_a=op.bits, bits_b=op.bits,
        tile=f"{len(steps)} chunk(s)" if steps else "on chip (index gather, load-path requant)",
        cycles=cycles, compute_cycles=compute_cycles, stall_cycles=cycles - compute_cycles,
        utilization=compute_cycles / cycles if cycles else 0.0, macs=0, bops=0,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=load, dram_write_bits=store, energy_mac_pj=0.0,
        energy_sram_pj=_sram_pj(accel, reads, writes),
        energy_dram_pj=(load + store) * accel.dram.energy_pj_per_bit,
        energy_vector_pj=op.elements * accel.vector.energy_pj_per_element[op.kind] if vector_busy else 0.0,
        energy_static_pj=_static_pj(accel, cycles), latency_s=cycles / accel.clock_hz,
    )
