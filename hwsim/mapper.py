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

The search: tile sizes from a bits-independent grid (:mod:`hwsim.grid`: even splits of each dimension rounded up to
the array's alignment; ``TileError`` when not even one alignment step fits) × every loop order the
array allows, one per group of orders that run the same steps; operands that fit their buffer whole
are resident and partial sums stay in the output buffer when they fit (both never cost more, so
the alternatives are pruned as dominated). Each candidate gets a closed-form lower bound of the
objective (:mod:`hwsim.bounds`, numpy, all at once: compute plus first load and last store, or all
DRAM traffic plus the pipeline ends' idle DRAM), and candidates are costed exactly
(:func:`hwsim.pipeline.pipeline_totals`, in closed form) in batches of the lowest bounds until no
bound is below the best exact cost. The pick is the exact optimum over the grid: the least (exact
value, bound, grid index). :func:`map_all` searches the bit variants of a shape together (a cost
table's every bit pair), one numpy pass per batch for all of them. A plan legal at some bits is legal at every narrower bits and costs no more there, so
fewer bits never cost more cycles (or energy).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.bounds import lower_bounds
from hwsim.cost import PJ_PER_J, gemm_cost
from hwsim.errors import HwsimError
from hwsim.grid import grid_of
from hwsim.pipeline import DIMS, Variants, block_counts, pipeline_totals
from hwsim.plan import GemmPlan, gemm_metrics, placed, too_big, variant_terms
from hwsim.result import OpCost
from hwsim.workload import Gemm

OBJECTIVES = ("cycles", "energy", "edp")
CHUNK, GROW_CHUNK = 2, 8  # candidates per variant costed exactly in the first batch (lowest bounds), growth


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


def _legal(op, accel, mt, kt, nt, pm, pk, pn, held, resident, known=None):
    """(legal, spills) per candidate: tiles fit their buffers, and partial sums have a place to wait.
    ``held`` / ``resident``: operand sets, or operand -> bool per candidate; ``known``: :func:`widths`
    (ints or per-candidate arrays; default: the op's)."""
    sa, sb, _, sp = widths(op, accel) if known is None else known
    # elements x of w bits fit a capacity c exactly when x <= c // w (positive integers): the candidates'
    # elements are compared with per-variant limits, with no bit products as large as the whole grid
    fit_a, fit_b, fit_o = (cap // bits for cap, bits in zip(_capacities(accel), (sa, sb, sp), strict=True))
    legal = (placed(held, "a") | placed(resident, "a") | (mt * kt <= fit_a)) \
        & (placed(held, "b") | placed(resident, "b") | (kt * nt <= fit_b)) & (mt * nt <= fit_o)
    nm, nk, nn = ceil_div(op.m, mt), ceil_div(op.k, kt), ceil_div(op.n, nt)
    revisit = (nk > 1) & (((nm > 1) & (pm > pk)) | ((nn > 1) & (pn > pk)))
    open_blocks = np.where(pm > pk, op.m, mt) * np.where(pn > pk, op.n, nt)
    buffered = ("buffer" in accel.memory.psum_in) & (open_blocks <= fit_o)
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


_KEY = tuple(field.name for field in dataclasses.fields(Gemm) if field.name != "name")
_SHAPE = tuple(name for name in _KEY if name not in ("bits_a", "bits_b", "bits_out"))


def _key(op: Gemm, fields: tuple[str, ...] = _KEY) -> tuple:
    """The cache key of an op: everything but its name (``fields=_SHAPE``: but its bits too), as a
    tuple (cheaper than a validated nameless copy)."""
    return tuple(getattr(op, field) for field in fields)


def mapped_cost(op: Gemm, accel: Accelerator, objective: str = "cycles") -> OpCost:
    """The exact cost of the plan :func:`map_gemm` picks (the fast path of ``hwsim.estimate``)."""
    found = _search(op, accel, objective)
    if found is None:
        return map_gemm(op, accel, objective).cost
    return found.cost if found.cost.name == op.name else dataclasses.replace(found.cost, name=op.name)


def map_gemm(op: Gemm, accel: Accelerator, objective: str = "cycles") -> Mapping:
    """The best plan of ``op`` on ``accel`` for ``objective`` and its exact cost (cached)."""
    SearchMapper(objective)  # validates the objective
    found = _search(op, accel, objective)
    if found is None:
        raise _no_room(op, accel, *(min(align, dim) for align, dim in zip(accel.array.alignment(), (op.m, op.k, op.n),
                                                                          strict=True)))
    plan = dataclasses.replace(found.plan, op=op)
    return dataclasses.replace(found, plan=plan, cost=dataclasses.replace(found.cost, name=op.name))


def map_all(ops: Iterable[Gemm], accel: Accelerator, objective: str = "cycles") -> None:
    """Search every op not searched yet, bit variants of one shape together (one numpy pass per batch
    of candidates for all of them); :func:`map_gemm` and ``hwsim.estimate`` then find them cached.
    This is what makes a cost table (every component at every bit pair) cheap."""
    SearchMapper(objective)
    groups: dict[tuple, dict[tuple, Gemm]] = {}
    for op in ops:
        key = _key(op)
        if (key, accel, objective) not in SEARCHED:
            groups.setdefault(_key(op, _SHAPE), {}).setdefault(key, op)
    for variants in groups.values():
        found = _search_variants(tuple(variants.values()), accel, objective)
        for key, one in zip(variants, found, strict=True):
            SEARCHED.put((key, accel, objective), one)


class _Searched:
    """The mapper's picks by (:func:`_key` of the op, accelerator, objective); the least recently used go
    beyond ``size`` (keys hold accelerator objects, so a long sweep must not keep them all)."""

    def __init__(self, size: int) -> None:
        self.size, self.entries, self.searches = size, OrderedDict(), 0

    def __contains__(self, key) -> bool:
        return key in self.entries

    def get(self, key):
        self.entries.move_to_end(key)
        return self.entries[key]

    def put(self, key, found: Mapping | None) -> None:
        self.searches += 1
        self.entries[key] = found
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()
        self.searches = 0


SEARCHED = _Searched(8192)


def _search(op: Gemm, accel: Accelerator, objective: str) -> Mapping | None:
    """The best plan (None when not even the smallest aligned tile fits), cached; its op is the first op
    of that key searched (callers give the plan and cost their own op's name)."""
    key = (_key(op), accel, objective)
    if key not in SEARCHED:
        SEARCHED.put(key, _search_variants((op,), accel, objective)[0])
    return SEARCHED.get(key)


def _search_variants(ops: tuple[Gemm, ...], accel: Accelerator, objective: str) -> list[Mapping | None]:
    """The best plan of each op (bit variants of one shape), searched together (see the module docstring).

    Candidates are rows ``variant × grid``: legality, bounds and exact costs are computed for all
    variants in the same numpy calls, and each variant keeps its own pick, the lexicographic minimum
    of (exact value, bound, grid index).
    """
    op, count = ops[0], len(ops)
    grid = grid_of(op, accel)
    known = [widths(o, accel) for o in ops]
    held = [onchip(o, accel) for o in ops]
    resident = [_resident(o, accel, h) for o, h in zip(ops, held, strict=True)]
    variants = Variants.of(ops, accel, known, resident, held, *grid.tiles)
    # per-variant facts as (variants, 1) columns: numpy broadcasts them against the (grid,) candidates
    per_variant = tuple(variants.widths[:, i:i + 1] for i in range(4))
    held_v = {x: variants.onchip[:, i:i + 1] for i, x in enumerate(("a", "b", "out"))}
    resident_v = {"a": variants.resident[:, 0:1], "b": variants.resident[:, 1:2]}
    # partial sums have one width whatever the bits (memory.psum_bits): where they spill is bits-independent
    legal, spill = _legal(op, accel, grid.mt, grid.kt, grid.nt, grid.pm, grid.pk, grid.pn, held_v, resident_v,
                          (*per_variant[:3], accel.memory.psum_bits))
    # candidates illegal at every variant's bits are dropped (the rest keep their order: ties break alike)
    keep = np.flatnonzero(np.broadcast_to(legal, (count, len(grid.mt))).any(axis=0))
    grid, legal, spill = grid.take(keep), np.broadcast_to(legal, (count, len(grid.mt)))[:, keep], spill[keep]
    mt, kt, nt, pm, pk, pn = grid.mt, grid.kt, grid.nt, grid.pm, grid.pk, grid.pn
    size, spills = len(mt), np.broadcast_to(spill, (count, len(mt)))
    # what the array's precision decides, per variant and distinct tile (block counts are bits-independent)
    counts = block_counts(op, accel, *grid.tiles)
    terms = variant_terms(ops, accel, *grid.tiles, counts, variants.tables)
    lower, energy = lower_bounds(ops, accel, objective, grid, spill, variants, terms)
    np.putmask(lower, ~legal, np.inf if lower.dtype.kind == "f" else np.iinfo(lower.dtype).max)  # not picked
    best = {"value": np.full(count, np.inf), "bound": np.full(count, np.inf), "index": np.full(count, size),
            "cycles": np.zeros(count, dtype=np.int64), "compute": np.zeros(count, dtype=np.int64)}
    evaluated, batch = np.zeros(count, dtype=np.int64), CHUNK
    # the first batch: each variant's lowest bounds over its grid (dense); then the candidates left that may
    # still win are kept as lists (``pool``), far fewer than the grid
    take = np.argpartition(lower, batch - 1, axis=1)[:, :batch] if batch < size else \
        np.indices((count, size))[1]
    v, g = np.repeat(np.arange(count), take.shape[1]), take.ravel()
    v, g = v[legal[v, g]], g[legal[v, g]]
    pool = None
    while len(v):
        cycles, compute = pipeline_totals(op, accel, variants, mt[g], kt[g], nt[g], pm[g], pk[g], pn[g], grid.tile[g],
                                          spills[v, g], v)
        if objective == "cycles":
            value = cycles
        else:
            total = energy[v, g] + accel.static_power_w * cycles / accel.clock_hz * PJ_PER_J
            value = total if objective == "energy" else total * cycles
        bound = lower[v, g]
        order = np.lexsort((g, bound, value, v))
        first = order[np.r_[True, v[order][1:] != v[order][:-1]]]  # each variant's pick of this batch
        w = v[first]
        better = (value[first] < best["value"][w]) | ((value[first] == best["value"][w]) & (
            (bound[first] < best["bound"][w]) | ((bound[first] == best["bound"][w]) & (g[first] < best["index"][w]))))
        w, first = w[better], first[better]
        for key, new in (("value", value), ("bound", bound), ("index", g), ("cycles", cycles), ("compute", compute)):
            best[key][w] = new[first]
        evaluated += np.bincount(v, minlength=count)
        if pool is None:
            alive = legal.copy()
            alive[v, g] = False
            pool = np.nonzero(alive)
        # only a candidate whose bound is below its variant's pick (or ties it ahead of the pick) can still win
        pv, pg = pool
        left, (value_, bound_, index_) = lower[pv, pg], (best[key][pv] for key in ("value", "bound", "index"))
        keep = (left < value_) | ((left == value_) & (bound_ == value_) & (pg < index_))
        pv, pg, left = pv[keep], pg[keep], left[keep]
        order = np.lexsort((left, pv))  # the next batch: each variant's lowest bounds left
        pv, pg = pv[order], pg[order]
        batch *= GROW_CHUNK
        take = np.arange(len(pv)) - np.searchsorted(pv, pv) < batch
        v, g, pool = pv[take], pg[take], (pv[~take], pg[~take])
    picked = np.flatnonzero(best["index"] < size)
    chosen = best["index"][picked]
    metrics = gemm_metrics(op, accel, *(x[chosen] for x in (mt, kt, nt, pm, pk, pn)), spill=spills[picked, chosen],
                           resident={x: f[picked, 0] for x, f in resident_v.items()},
                           onchip={x: f[picked, 0] for x, f in held_v.items()},
                           widths=tuple(w[picked, 0] for w in per_variant),
                           terms=tuple(t[picked, grid.tile[chosen]] for t in terms))
    found: list[Mapping | None] = [None] * count
    ranked = legal.sum(axis=1)
    for j, (i, g) in enumerate(zip(picked, chosen, strict=True)):
        one = ops[i]
        order = "".join(d for _, d in sorted(zip((pm[g], pk[g], pn[g]), DIMS, strict=True)))
        plan = GemmPlan(one, int(mt[g]), int(kt[g]), int(nt[g]), order, "dram" if spills[i, g] else "buffer",
                        *known[i], resident[i], held[i])
        cost = gemm_cost(plan, accel, int(best["cycles"][i]), one.count * int(best["compute"][i]),
                         {key: int(values[j]) for key, values in metrics.items()})
        found[i] = Mapping(plan, cost, int(ranked[i]), int(evaluated[i]))
    return found
