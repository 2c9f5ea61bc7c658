"""Precision-aware tiling of ops into buffer-sized tiles, and the traffic/energy each plan implies.

A GEMM instance is cut into ``mt×kt×nt`` blocks (the edge blocks are smaller) and run in one of
two loop orders, both with ``k`` innermost so partial sums never leave the output buffer:

* ``nmk``: for each n-block, for each m-block, for each k-block;
* ``mnk``: for each m-block, for each n-block, for each k-block.

Every input tile must fit half of its buffer (double buffering) at the operand's *storage*
width, so a 4-bit tensor gets tiles twice as large as an 8-bit one. A tile already on chip is
not fetched again: with ``nk == 1`` the operand indexed by the outer loop stays resident
through the middle loop, and an operand that fits half its buffer whole (or is a single
tile) is fetched once per instance. The plan with the lowest closed-form
time wins (keeping the array's streamed dimension whole whenever some plan fits that way);
among plans within 1% of it, the one with the fewest tiles (then least DRAM traffic),
since real tiles carry per-transfer overheads the closed form leaves out.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.errors import HwsimError, TileError
from hwsim.workload import VECTOR_KINDS, Gemm, VectorOp

ORDERS = ("nmk", "mnk")
NEAR_FASTEST = 0.01  # among plans this close to the fastest, take the fewest (largest) tiles


def blocks(dim: int, tile: int) -> tuple[int, ...]:
    """Block sizes along one dimension: full tiles then the remainder."""
    full, rest = divmod(dim, tile)
    return (tile,) * full + ((rest,) if rest else ())


def candidates(dim: int, granule: int) -> list[int]:
    """Tile sizes worth trying: even splits of ``dim`` rounded up to the array granule, largest first."""
    granule = min(granule, dim)
    sizes, parts = set(), 1
    while True:
        size = min(dim, ceil_div(ceil_div(dim, parts), granule) * granule)
        sizes.add(size)
        if size <= granule:
            return sorted(sizes, reverse=True)
        parts = parts + 1 if parts < 8 else math.ceil(parts * 1.25)


@dataclass(frozen=True)
class Transfer:
    """One step of an op's pipeline: fetch ``load_bits``, keep a unit busy ``compute`` cycles, and,
    when an output block is complete, write ``store_bits`` back."""

    load_bits: int
    compute: int
    store_bits: int
    opens_output: bool
    closes_output: bool


@dataclass(frozen=True)
class GemmPlan:
    op: Gemm
    mt: int
    kt: int
    nt: int
    order: str
    bits_a: int  # storage bits per A element
    bits_b: int
    bits_out: int
    psum_bits: int
    a_resident: bool = False  # all of A fits half the ifmap buffer
    b_resident: bool = False

    @property
    def label(self) -> str:
        return f"{self.mt}x{self.kt}x{self.nt}/{self.order}"

    @property
    def m_blocks(self) -> tuple[int, ...]:
        return blocks(self.op.m, self.mt)

    @property
    def k_blocks(self) -> tuple[int, ...]:
        return blocks(self.op.k, self.kt)

    @property
    def n_blocks(self) -> tuple[int, ...]:
        return blocks(self.op.n, self.nt)

    def _reuse(self) -> tuple[bool, bool]:
        """Whether A / B are fetched once per instance (else once per step of the outer/middle loop)."""
        nm, nk, nn = len(self.m_blocks), len(self.k_blocks), len(self.n_blocks)
        if self.order == "nmk":
            return self.a_resident or nm * nk == 1, self.b_resident or nk == 1
        return self.a_resident or nk == 1, self.b_resident or nn * nk == 1

    def a_loads(self) -> int:
        """How many times A is fetched per instance."""
        once, _ = self._reuse()
        if once:
            return 1
        return len(self.n_blocks)

    def b_loads(self) -> int:
        _, once = self._reuse()
        if once:
            return 1
        return len(self.m_blocks)

    def dram_bits(self) -> tuple[int, int]:
        """(read, write) DRAM bits per instance."""
        op = self.op
        read = op.m * op.k * self.bits_a * self.a_loads() + op.k * op.n * self.bits_b * self.b_loads()
        return read, op.m * op.n * self.bits_out

    def steps(self):
        """Yield ``(m, k, n, load_a, load_b, first_k, last_k, index)`` per tile of one instance in loop
        order; ``index`` is the tile's (m, k, n) block index."""
        mb, kb, nb = self.m_blocks, self.k_blocks, self.n_blocks
        a_once, b_once = self._reuse()
        outer, middle = (nb, mb) if self.order == "nmk" else (mb, nb)
        for o, outer_size in enumerate(outer):
            for mi, middle_size in enumerate(middle):
                if self.order == "nmk":
                    m, n, im, in_ = middle_size, outer_size, mi, o
                    load_a, load_b = (o == 0) if a_once else True, (mi == 0) if b_once else True
                else:
                    m, n, im, in_ = outer_size, middle_size, o, mi
                    load_a, load_b = (mi == 0) if a_once else True, (o == 0) if b_once else True
                for j, k in enumerate(kb):
                    yield m, k, n, load_a, load_b, j == 0, j == len(kb) - 1, (im, j, in_)


@dataclass(frozen=True)
class VectorPlan:
    op: VectorOp
    chunk: int

    @property
    def label(self) -> str:
        return f"{self.chunk}"

    @property
    def inputs(self) -> int:
        return VECTOR_KINDS[self.op.kind].inputs

    @property
    def chunks(self) -> tuple[int, ...]:
        return blocks(self.op.elements, self.chunk)


def vector_rate(op: VectorOp, accel: Accelerator) -> float:
    try:
        return accel.vector.cycles_per_element[op.kind]
    except KeyError:
        raise HwsimError(
            f"op '{op.name}': accelerator '{accel.name}' has no vector.cycles_per_element.{op.kind}; add it to its YAML"
        ) from None


def vector_energy_per_element(op: VectorOp, accel: Accelerator) -> float:
    try:
        return accel.vector.energy_pj_per_element[op.kind]
    except KeyError:
        raise HwsimError(
            f"op '{op.name}': accelerator '{accel.name}' has no vector.energy_pj_per_element.{op.kind}; add it to its YAML"
        ) from None


def vector_chunk_cycles(op: VectorOp, accel: Accelerator, elements: int) -> int:
    return math.ceil(elements * vector_rate(op, accel) / accel.vector.lanes)


def _too_big(op_name: str, what: str, bits: int, shape: str, need_bits: int, buffer: str, accel: Accelerator):
    have = getattr(accel.buffers, buffer)
    return TileError(
        f"op '{op_name}': one {bits}-bit tile of {shape} ({what}) needs {ceil_div(need_bits, 8)} bytes "
        f"double-buffered but buffer '{buffer}' has {have} bytes; enlarge buffers.{buffer} or lower the op's bits"
    )


def plan_vector(op: VectorOp, accel: Accelerator) -> VectorPlan:
    inputs = VECTOR_KINDS[op.kind].inputs
    chunk = min(
        op.elements,
        accel.buffers.bits("ifmap") // (2 * op.bits * inputs),
        accel.buffers.bits("ofmap") // (2 * op.bits),
    )
    if chunk < 1:
        buffer = "ifmap" if accel.buffers.bits("ifmap") < 2 * op.bits * inputs else "ofmap"
        raise _too_big(op.name, "one element", op.bits, "1", 2 * op.bits * inputs, buffer, accel)
    vector_rate(op, accel)
    vector_energy_per_element(op, accel)
    return VectorPlan(op, chunk)


def _plan_time(plan: GemmPlan, accel: Accelerator) -> tuple[int, int, int]:
    """(closed-form cycles, DRAM bits, tiles) of a plan for all instances; the tiler's objective."""
    timing = gemm_timing(plan, accel)
    return timing.cycles, timing.dram_bits, timing.tiles


def _block_classes(sizes: tuple[int, ...], streamed: bool) -> Counter:
    """Count blocks by (size, starts the dimension); only the streamed dimension's first block starts it."""
    if not streamed:
        return Counter((size, True) for size in sizes)
    return Counter([(sizes[0], True)] + [(size, False) for size in sizes[1:]])


@dataclass(frozen=True)
class GemmTiming:
    cycles: int
    compute_cycles: int
    dram_bits: int
    tiles: int


def gemm_timing(plan: GemmPlan, accel: Accelerator) -> GemmTiming:
    """Closed-form pipeline time of all ``count`` instances of a planned GEMM.

    With double buffering the array and DRAM overlap, so the op takes the longer of
    ``first load + all compute + last store`` (compute-bound) and
    ``all DRAM transfers + last tile's compute`` (memory-bound).
    """
    op, array, dram = plan.op, accel.array, accel.dram
    streamed = [extent is None for extent in array.extents(op)]
    classes = [_block_classes(sizes, s) for sizes, s in zip((plan.m_blocks, plan.k_blocks, plan.n_blocks), streamed,
                                                            strict=True)]
    per_instance = sum(
        cm * ck * cn * array.tile_cycles(m, k, n, op, stream_start=fm and fk and fn)
        for (m, fm), cm in classes[0].items()
        for (k, fk), ck in classes[1].items()
        for (n, fn), cn in classes[2].items()
    )
    overhead = array.instance_overhead_cycles(op)
    compute = op.count * (per_instance + overhead)
    m0, k0, n0 = plan.m_blocks[0], plan.k_blocks[0], plan.n_blocks[0]
    m1, k1, n1 = plan.m_blocks[-1], plan.k_blocks[-1], plan.n_blocks[-1]
    first_load = dram.cycles(m0 * k0 * plan.bits_a + k0 * n0 * plan.bits_b)
    last_store = dram.cycles(m1 * n1 * plan.bits_out)
    tiles = len(plan.m_blocks) * len(plan.k_blocks) * len(plan.n_blocks)
    last_compute = array.tile_cycles(m1, k1, n1, op, stream_start=tiles == 1) + (overhead if tiles == 1 else 0)
    read, write = plan.dram_bits()
    dram_bits = op.count * (read + write)
    cycles = max(first_load + compute + last_store, dram.cycles(dram_bits) + last_compute)
    return GemmTiming(cycles, compute, dram_bits, tiles * op.count)


def check_gemm_fits(op: Gemm, accel: Accelerator) -> None:
    """Raise TileError when even the smallest array-aligned tile of ``op`` overflows a buffer."""
    array, buffers = accel.array, accel.buffers
    sa, sb = array.storage_bits(op.bits_a, "a"), array.storage_bits(op.bits_b, "b")
    psum = buffers.psum_bits
    gm, gk, gn = (min(g, dim) for g, dim in zip(array.granules(op), (op.m, op.k, op.n), strict=True))
    cap_a, cap_b, cap_o = (buffers.bits(name) // 2 for name in ("ifmap", "filter", "ofmap"))
    if gm * gk * sa > cap_a:
        raise _too_big(op.name, "A", sa, f"{gm}x{gk}", 2 * gm * gk * sa, "ifmap", accel)
    if gk * gn * sb > cap_b:
        raise _too_big(op.name, "B", sb, f"{gk}x{gn}", 2 * gk * gn * sb, "filter", accel)
    if gm * gn * psum > cap_o:
        raise _too_big(op.name, "partial sums", psum, f"{gm}x{gn}", 2 * gm * gn * psum, "ofmap", accel)


def plan_gemm(op: Gemm, accel: Accelerator) -> GemmPlan:
    """Pick the tiling of ``op`` on ``accel`` (cached per accelerator object and op shape/bits)."""
    check_gemm_fits(op, accel)
    key = Gemm("_", op.m, op.k, op.n, op.bits_a, op.bits_b, op.count, op.kind, op.bits_out)
    plan = _plan_gemm_cached(key, accel)
    return dataclasses.replace(plan, op=op)


@lru_cache(maxsize=4096)
def _plan_gemm_cached(op: Gemm, accel: Accelerator) -> GemmPlan:
    array, buffers = accel.array, accel.buffers
    sa, sb = array.storage_bits(op.bits_a, "a"), array.storage_bits(op.bits_b, "b")
    so, psum = array.storage_bits(op.out_bits, "a"), buffers.psum_bits
    gm, gk, gn = (min(g, dim) for g, dim in zip(array.granules(op), (op.m, op.k, op.n), strict=True))
    cap_a, cap_b, cap_o = (buffers.bits(name) // 2 for name in ("ifmap", "filter", "ofmap"))
    a_resident, b_resident = op.m * op.k * sa <= cap_a, op.k * op.n * sb <= cap_b
    full = [candidates(dim, g) for dim, g in ((op.m, gm), (op.k, gk), (op.n, gn))]
    # Keep the streamed dimension whole when possible: splitting it repeats the fill/drain of
    # every fold (SCALE-Sim streams it whole and never pays that).
    whole = [[dim] if extent is None else cands
             for dim, extent, cands in zip((op.m, op.k, op.n), array.extents(op), full, strict=True)]
    for cand_m, cand_k, cand_n in (whole, full):
        scored = []
        for mt in cand_m:
            for nt in cand_n:
                if mt * nt * psum > cap_o:
                    continue
                kt = next((k for k in cand_k if mt * k * sa <= cap_a and k * nt * sb <= cap_b), None)
                if kt is None:
                    continue
                for order in ORDERS:
                    plan = GemmPlan(op, mt, kt, nt, order, sa, sb, so, psum, a_resident, b_resident)
                    scored.append((_plan_time(plan, accel), plan))
        if scored:
            break
    # check_gemm_fits passed, so the granule tile is a feasible candidate and ``scored`` is not empty.
    fastest = min(cycles for (cycles, _, _), _ in scored)
    near = [(tiles, dram_bits, cycles, i) for i, ((cycles, dram_bits, tiles), _) in enumerate(scored)
            if cycles <= fastest * (1 + NEAR_FASTEST)]
    return scored[min(near)[-1]][1]


def gemm_transfers(plan, accel: Accelerator) -> list[Transfer]:
    """The tile steps of one GEMM instance (the op repeats them ``count`` times)."""
    op, array = plan.op, accel.array
    cycles_of: dict[tuple[int, int, int, bool], int] = {}
    overhead = array.instance_overhead_cycles(op)
    streamed = [dim for dim, extent in enumerate(array.extents(op)) if extent is None]
    steps = []
    for index, (m, k, n, load_a, load_b, first_k, last_k, block) in enumerate(plan.steps()):
        shape = (m, k, n, all(block[dim] == 0 for dim in streamed))
        if shape not in cycles_of:
            cycles_of[shape] = array.tile_cycles(m, k, n, op, stream_start=shape[3])
        load = (m * k * plan.bits_a if load_a else 0) + (k * n * plan.bits_b if load_b else 0)
        compute = cycles_of[shape] + (overhead if index == 0 else 0)
        store = m * n * plan.bits_out if last_k else 0
        steps.append(Transfer(load, compute, store, first_k, last_k))
    return steps


def vector_transfers(plan, accel: Accelerator) -> list[Transfer]:
    op = plan.op
    return [
        Transfer(c * op.bits * plan.inputs, vector_chunk_cycles(op, accel, c), c * op.bits, True, True)
        for c in plan.chunks
    ]


def pipeline_cycles(steps: list[Transfer], repeat: int, accel: Accelerator) -> int:
    """Closed-form time of ``steps`` run ``repeat`` times through the double-buffered pipeline.

    While the unit works on step i, DRAM fetches step i+1 and drains the output block step
    i−1 closed, so step i costs ``max(C_i, L_{i+1} + S_{i−1})``; add the first load and the
    last store. Exact when each step's DRAM work fits in one step of look-ahead.
    """
    dram = accel.dram
    n = len(steps)
    loads = [dram.cycles(s.load_bits) for s in steps]
    stores = [dram.cycles(s.store_bits) if s.closes_output else 0 for s in steps]
    compute = [s.compute for s in steps]
    if n * repeat == 1:
        return loads[0] + compute[0] + stores[0]
    period = sum(max(compute[i], loads[(i + 1) % n] + stores[i - 1]) for i in range(n))
    first = max(compute[0], loads[1 % n] + stores[-1]) - max(compute[0], loads[1 % n])
    last = max(compute[-1], loads[0] + stores[n - 2]) - max(compute[-1], stores[n - 2])
    return loads[0] + repeat * period - first - last + stores[-1]
