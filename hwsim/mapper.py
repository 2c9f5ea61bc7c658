"""The mapper: per GEMM, the plan with the lowest cost *as the simulation reports it*.

Interface (used by ``hwsim.estimate``, ``hwsim.simulate`` and reference-mapping replays):

* :class:`hwsim.plan.GemmPlan` is a complete mapping: tile sizes, loop order, where partial sums
  wait (output ``buffer`` or ``dram`` at ``psum_bits``), resident operands, data held on chip
  between layers, storage / write-back widths. :func:`make_plan` builds one from tiles and a loop
  order, filling in everything the accelerator's ``memory`` facts decide (pass ``psum`` or
  ``resident`` to override them, as a replayed reference mapping does); it raises ``TileError``
  when the plan overflows a buffer. A ``GemmPlan`` constructed directly (or changed with
  ``dataclasses.replace``) is costed as given, without capacity checks.
* A :class:`Mapper` is anything with ``plan(op, accel) -> GemmPlan``. :class:`SearchMapper` (the
  default, ``objective`` = ``"cycles"``, ``"energy"`` or ``"edp"``) searches; a reference replay
  is another Mapper. ``hwsim.estimate(op, accel, mapper=...)`` and ``hwsim.simulate(workload,
  accel, mapper=...)`` cost whichever plan a mapper returns with the same code, so their cycles agree
  exactly.
* :func:`map_gemm` ``(op, accel, objective) -> Mapping`` returns the chosen plan and its exact
  :class:`hwsim.OpCost` (cached per op shape/bits and accelerator object); :func:`cost_plan` costs any
  plan exactly (it is what ``estimate`` reports).

The search: tile sizes from a bits-independent grid (even splits of each dimension rounded up to
the array's alignment; ``TileError`` when not even one alignment step fits) × every loop order the
array allows, one per group of orders that run the same steps; operands that fit their buffer whole
are resident and partial sums stay in the output buffer when they fit (both never cost more, so
the alternatives are pruned as dominated). Each candidate gets a closed-form lower bound of the
objective (numpy, all at once: compute plus first load and last store, or all DRAM traffic plus
the pipeline ends' idle DRAM), and candidates are costed exactly, in numpy batches, in order of that
bound until the bound exceeds the best exact cost — so the pick is the exact optimum over the grid. A plan legal at some bits is legal at
every narrower bits and costs no more there, so fewer bits never cost more cycles (or energy).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.cost import PJ_PER_J, cost_plan, sram_pj
from hwsim.errors import HwsimError
from hwsim.plan import DIMS, GemmPlan, batch_cycles, batch_steps, gemm_metrics, too_big
from hwsim.result import OpCost
from hwsim.workload import Gemm

OBJECTIVES = ("cycles", "energy", "edp")
GROWTH = 1.5  # candidate tile sizes: splits into 1..4 parts, then ~1.5x more parts each step
CHUNK, STEPS = 128, 4096  # candidates (and their tile steps) costed exactly per numpy batch, best bounds first


class Mapper(Protocol):
    """Chooses the plan of a GEMM on an accelerator."""

    def plan(self, op: Gemm, accel: Accelerator) -> GemmPlan: ...


@dataclass(frozen=True)
class Mapping:
    """The mapper's pick: the plan, its exact cost, and how many legal plans it ranked / costed exactly."""

    plan: GemmPlan
    cost: OpCost
    candidates: int
    evaluated: int


@dataclass(frozen=True)
class SearchMapper:
    """The default mapper: the best plan of the search grid for ``objective``."""

    objective: str = "cycles"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise HwsimError(f"mapping objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")

    def plan(self, op: Gemm, accel: Accelerator) -> GemmPlan:
        return map_gemm(op, accel, self.objective).plan


DEFAULT_MAPPER = SearchMapper()


def candidates(dim: int, align: int) -> np.ndarray:
    """Tile sizes tried along one dimension, largest first: even splits of ``dim`` rounded up to
    ``align`` (a legal tile spans at least one alignment step of the array, or the whole dimension)."""
    align = min(align, dim)
    sizes, parts = set(), 1
    while True:
        size = min(dim, ceil_div(ceil_div(dim, parts), align) * align)
        sizes.add(size)
        if size <= align:
            return np.array(sorted(sizes, reverse=True), dtype=np.int64)
        parts = parts + 1 if parts < 4 else int(parts * GROWTH)


@lru_cache(maxsize=1024)
def _grid(m: int, k: int, n: int, accel: Accelerator) -> tuple[np.ndarray, ...]:
    """The candidate (mt, kt, nt, pm, pk, pn) of a shape: tile grid × loop orders, one per group of
    orders that run the same steps."""
    sizes = (candidates(dim, align) for dim, align in zip((m, k, n), accel.array.alignment(), strict=True))
    tiles = [axis.ravel() for axis in np.meshgrid(*sizes, indexing="ij")]
    orders = accel.array.loop_orders()
    mt, kt, nt = (np.tile(axis, len(orders)) for axis in tiles)
    pm, pk, pn = (np.repeat([order.index(d) for order in orders], len(tiles[0])) for d in DIMS)
    keep = _first_of_equivalents(m, k, n, mt, kt, nt, pm, pk, pn)
    return tuple(x[keep] for x in (mt, kt, nt, pm, pk, pn))


def widths(op: Gemm, accel: Accelerator) -> tuple[int, int, int, int]:
    """Storage bits of A and B, write-back bits of the output, psum bits."""
    memory = accel.memory
    return (memory.storage_bits(op.bits_a, "a"), memory.storage_bits(op.bits_b, "b"), memory.out_bits(op),
            memory.psum_bits)


def onchip(op: Gemm, accel: Accelerator) -> frozenset[str]:
    """Data of ``op`` held in on-chip memory between layers (the preset's ``memory.onchip`` facts):
    its activations (A, the output, B of an activation-activation matmul) when all of them fit the
    ifmap memory; a linear layer's weights when they fit the filter memory."""
    sa, sb, so, _ = widths(op, accel)
    held: set[str] = set()
    a, b, out = (op.count * op.m * op.k * sa, op.count * op.k * op.n * sb, op.count * op.m * op.n * so)
    if "activations" in accel.memory.onchip:
        activations = a + out + (b if op.kind == "matmul" else 0)
        if activations <= accel.buffers.bits("ifmap"):
            held |= {"a", "out"} | ({"b"} if op.kind == "matmul" else set())
    if "weights" in accel.memory.onchip and op.kind == "linear" and b <= accel.buffers.bits("filter"):
        held.add("b")
    return frozenset(held)


def _capacities(accel: Accelerator) -> tuple[int, int, int]:
    """Bits a tile may use in the ifmap, filter and ofmap buffers (half of each: double buffering)."""
    return tuple(accel.buffers.bits(name) // 2 for name in ("ifmap", "filter", "ofmap"))


def _resident(op: Gemm, accel: Accelerator, held: frozenset[str]) -> frozenset[str]:
    """Operands fetched whole once per instance: those fitting half their buffer (never worse than re-fetching)."""
    sa, sb, _, _ = widths(op, accel)
    cap_a, cap_b, _ = _capacities(accel)
    fits = {"a": op.m * op.k * sa <= cap_a, "b": op.k * op.n * sb <= cap_b}
    return frozenset(x for x, ok in fits.items() if ok and x not in held)


def _legal(op, accel, mt, kt, nt, pm, pk, pn, held, resident):
    """(legal, spills) per candidate: tiles fit their buffers, and partial sums have a place to wait."""
    sa, sb, _, sp = widths(op, accel)
    cap_a, cap_b, cap_o = _capacities(accel)
    legal = (("a" in held or "a" in resident) | (mt * kt * sa <= cap_a)) \
        & (("b" in held or "b" in resident) | (kt * nt * sb <= cap_b)) & (mt * nt * sp <= cap_o)
    nm, nk, nn = ceil_div(op.m, mt), ceil_div(op.k, kt), ceil_div(op.n, nt)
    revisit = (nk > 1) & (((nm > 1) & (pm > pk)) | ((nn > 1) & (pn > pk)))
    open_blocks = np.where(pm > pk, op.m, mt) * np.where(pn > pk, op.n, nt) * sp
    buffered = ("buffer" in accel.memory.psum_in) & (open_blocks <= cap_o)
    spills = revisit & ~buffered
    legal &= ~spills | ("dram" in accel.memory.psum_in)
    return legal, spills


def make_plan(op: Gemm, accel: Accelerator, mt: int, kt: int, nt: int, order: str, psum: str | None = None,
              resident: frozenset[str] | None = None) -> GemmPlan:
    """A plan with the given tiles and loop order; the rest from the accelerator's facts unless given.

    ``psum=None`` keeps partial sums in the output buffer when they fit, else spills them (if the
    preset allows); ``resident=None`` keeps every operand that fits half its buffer.
    """
    if sorted(order) != sorted(DIMS) or not all(1 <= t <= d for t, d in ((mt, op.m), (kt, op.k), (nt, op.n))):
        raise HwsimError(f"op '{op.name}': a plan needs tiles within {op.m}x{op.k}x{op.n} and a loop order "
                         f"permuting 'mkn', got {mt}x{kt}x{nt}/{order}")
    held = onchip(op, accel)
    resident = _resident(op, accel, held) if resident is None else frozenset(resident) - held
    pm, pk, pn = (order.index(d) for d in DIMS)
    legal, spills = _legal(op, accel, mt, kt, nt, pm, pk, pn, held, resident)
    if psum is None:
        psum = "dram" if spills else "buffer"
    if not legal or (psum == "buffer" and spills):
        raise _no_room(op, accel, mt, kt, nt)
    sa, sb, so, sp = widths(op, accel)
    return GemmPlan(op, mt, kt, nt, order, psum, sa, sb, so, sp, resident, held)


def _no_room(op: Gemm, accel: Accelerator, mt: int, kt: int, nt: int):
    """The TileError naming the first buffer that a tile of ``mt×kt×nt`` overflows."""
    sa, sb, _, sp = widths(op, accel)
    cap_a, cap_b, _ = _capacities(accel)
    if mt * kt * sa > cap_a:
        return too_big(op.name, "A", sa, f"{mt}x{kt}", 2 * mt * kt * sa, "ifmap", accel)
    if kt * nt * sb > cap_b:
        return too_big(op.name, "B", sb, f"{kt}x{nt}", 2 * kt * nt * sb, "filter", accel)
    return too_big(op.name, "partial sums", sp, f"{mt}x{nt}", 2 * mt * nt * sp, "ofmap", accel)


def _objective(cost: OpCost, objective: str) -> float:
    return {"cycles": cost.cycles, "energy": cost.energy_pj, "edp": cost.energy_pj * cost.cycles}[objective]


def _shape(op: Gemm) -> Gemm:
    """The cache key of an op: everything but its name."""
    return op if op.name == "_" else dataclasses.replace(op, name="_")


def mapped_cost(op: Gemm, accel: Accelerator, objective: str = "cycles") -> OpCost:
    """The exact cost of the plan :func:`map_gemm` picks (the fast path of ``hwsim.estimate``)."""
    found = _search(_shape(op), accel, objective)
    return dataclasses.replace(found.cost, name=op.name) if found is not None else map_gemm(op, accel, objective).cost


def map_gemm(op: Gemm, accel: Accelerator, objective: str = "cycles") -> Mapping:
    """The best plan of ``op`` on ``accel`` for ``objective`` and its exact cost (cached)."""
    SearchMapper(objective)  # validates the objective
    found = _search(_shape(op), accel, objective)
    if found is None:
        raise _no_room(op, accel, *(min(align, dim) for align, dim in zip(accel.array.alignment(), (op.m, op.k, op.n),
                                                                          strict=True)))
    plan = dataclasses.replace(found.plan, op=op)
    return dataclasses.replace(found, plan=plan, cost=dataclasses.replace(found.cost, name=op.name))


@lru_cache(maxsize=8192)
def _search(op: Gemm, accel: Accelerator, objective: str) -> Mapping | None:
    """The best plan (None when not even the smallest aligned tile fits)."""
    held = onchip(op, accel)
    resident = _resident(op, accel, held)
    mt, kt, nt, pm, pk, pn = _grid(op.m, op.k, op.n, accel)
    legal, spills = _legal(op, accel, mt, kt, nt, pm, pk, pn, held, resident)
    if not legal.any():
        return None
    plans = [x[legal] for x in (mt, kt, nt, pm, pk, pn, spills)]
    known = widths(op, accel)
    lower, energy = _lower_bounds(op, accel, objective, *plans, held, resident)
    ranked = np.argsort(lower, kind="stable")
    best_value, best, evaluated = np.inf, -1, 0
    length = np.prod([ceil_div(dim, t) for dim, t in zip((op.m, op.k, op.n), plans[:3], strict=True)], axis=0)
    while evaluated < len(ranked) and lower[ranked[evaluated]] < best_value:
        chunk = ranked[evaluated:evaluated + CHUNK]
        chunk = chunk[(lower[chunk] < best_value) & (np.cumsum(length[chunk]) <= max(STEPS, length[chunk[0]]))]
        steps = batch_steps(op, accel, *(x[chunk] for x in plans[:6]), spill=plans[6][chunk], resident=resident,
                            onchip=held, widths=known)
        cycles = batch_cycles(steps, op.count, accel)
        total = energy[chunk] + accel.static_power_w * cycles / accel.clock_hz * PJ_PER_J
        value = {"cycles": cycles, "energy": total, "edp": total * cycles}[objective]
        if value.min() < best_value:
            best_value, best = value.min(), chunk[int(np.argmin(value))]
        evaluated += len(chunk) if len(chunk) else len(ranked)
    mt, kt, nt, pm, pk, pn, spill = (x[best] for x in plans)
    order = "".join(d for _, d in sorted(zip((pm, pk, pn), DIMS, strict=True)))
    plan = GemmPlan(op, int(mt), int(kt), int(nt), order, "dram" if spill else "buffer", *known, resident, held)
    return Mapping(plan, cost_plan(plan, accel), len(lower), min(evaluated, len(lower)))


def _first_of_equivalents(m: int, k: int, n: int, mt, kt, nt, pm, pk, pn) -> np.ndarray:
    """True for the first of each group of candidates whose loop orders differ only in loops of one
    block (they run the very same steps)."""
    counts = (ceil_div(m, mt), ceil_div(k, kt), ceil_div(n, nt))
    positions = (pm, pk, pn)
    ranks = []
    for d, (count, position) in enumerate(zip(counts, positions, strict=True)):
        outer = sum((other_count > 1) & (other < position)
                    for e, (other_count, other) in enumerate(zip(counts, positions, strict=True)) if e != d)
        ranks.append(np.where(count > 1, outer, -1))
    key = ((mt * (k + 1) + kt) * (n + 1) + nt) * 64 + (ranks[0] + 1) * 16 + (ranks[1] + 1) * 4 + ranks[2] + 1
    first = np.zeros(len(mt), dtype=bool)
    first[np.unique(key, return_index=True)[1]] = True
    return first


def _idle_ends(op, accel, mt, kt, nt, spills, held):
    """Channel ticks (:attr:`hwsim.Dram.ticks_per_cycle`) the DRAM channel must idle at the two ends of a plan's pipeline: the first step computes
    while only one step's fetch can overlap it, the last while only one write-back can (none of this
    when the whole op is one step)."""
    array, dram = accel.array, accel.dram
    sa, sb, so, sp = widths(op, accel)
    counts = [ceil_div(dim, t) for dim, t in zip((op.m, op.k, op.n), (mt, kt, nt), strict=True)]
    edges = [dim - (count - 1) * t for dim, count, t in zip((op.m, op.k, op.n), counts, (mt, kt, nt), strict=True)]
    whole = np.ones(len(mt), dtype=bool)
    for count, extent in zip(counts, array.extents(op), strict=True):
        if extent is None:
            whole &= count == 1
    overhead = array.instance_overhead_cycles(op)
    first = array.tile_cycles(mt, kt, nt, op, True) + overhead
    last = array.tile_cycles(*edges, op, whole) + overhead * (counts[0] * counts[1] * counts[2] == 1)
    load = (0 if "a" in held else mt * kt * sa) + (0 if "b" in held else kt * nt * sb) + spills * mt * nt * sp
    store = mt * nt * np.maximum(0 if "out" in held else so, spills * sp)
    tick = dram.ticks_per_cycle
    idle = np.maximum(first * tick - dram.ticks(load), 0) + np.maximum(last * tick - dram.ticks(store), 0)
    return np.where(op.count * counts[0] * counts[1] * counts[2] > 1, idle, 0)


def _lower_bounds(op, accel, objective, mt, kt, nt, pm, pk, pn, spills, held, resident):
    """Per candidate, a value the exact objective never goes below (see the module docstring), and its
    energy without the static part (exact: only static energy depends on the pipelined cycles)."""
    metrics = gemm_metrics(op, accel, mt, kt, nt, pm, pk, pn, spill=spills, resident=resident, onchip=held,
                           widths=widths(op, accel))
    channel, tick = accel.dram, accel.dram.ticks_per_cycle
    dram = op.count * (metrics["dram_read"] + metrics["dram_write"])
    compute_bound = channel.ticks(metrics["first_load"]) + op.count * metrics["compute"] * tick \
        + channel.ticks(metrics["last_store"])
    ticks = np.maximum(compute_bound, channel.ticks(dram) + _idle_ends(op, accel, mt, kt, nt, spills, held))
    cycles = -(-ticks // tick)
    sram = {name.split("_")[-1]: op.count * value for name, value in metrics.items() if name.startswith("sram_read")}
    sram_written = {name.split("_")[-1]: op.count * value for name, value in metrics.items()
                    if name.startswith("sram_write")}
    energy = (op.macs * accel.array.mac_energy_pj(op) + sram_pj(accel, sram, sram_written)
              + dram * accel.dram.energy_pj_per_bit)
    total = energy + accel.static_power_w * cycles / accel.clock_hz * PJ_PER_J
    return {"cycles": cycles, "energy": total, "edp": total * cycles}[objective], energy
