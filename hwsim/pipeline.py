"""GEMM plans as tile steps through the double-buffered pipeline, and their exact time in closed form.

Steps run lock-step: while the array computes step i, DRAM fetches step i+1's new inputs and then
writes back what step i−1 finished, so step i takes ``max(C_i, L_{i+1} + S_{i−1})``
(:func:`pipeline_cycles`; the simpy engine schedules exactly this). A step fetches an operand tile
when it differs from the previous step's (if resident only on the first pass of the loop that does
not index it, never if on chip), re-reads spilled partial sums when it reopens an output block, and
writes the block back when it leaves it (outputs after the last k-step, else spilled partial sums).

* :func:`batch_steps` lists every step of plans (what the event simulation runs);
* :func:`pipeline_totals` gives the same total time without listing them: a step's term depends only
  on whether its block indices are first or last and whether its neighbours' are last (never on
  whether a neighbour's is first), so along a loop of ``c`` blocks the indices ``1 .. c-3`` all give
  the same term, and each loop is summed over at most four representatives (0, one middle index
  weighted ``c-3``, c-2, c-1): at most 64 steps per plan (c-2 too gives the middle's term when the
  tile divides the dimension, as the last block is then no smaller).

What a step's geometry is (block sizes, which loops changed) does not depend on bits; what it moves
and computes does. :class:`Variants` holds the bit-dependent facts of several bit variants of one
shape, and every plan says which variant it is of: the mapper prices each variant's candidates in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.workload import Gemm

DIMS = "mkn"
REPRESENTATIVES = 4  # block indices summed per loop: 0, a middle one, c-2, c-1
ROWS = 4096  # representative steps costed per numpy pass


@dataclass(frozen=True)
class Steps:
    """The pipeline of one op instance: per step, bits fetched before it, busy cycles, bits written
    back after it; the op runs them ``repeat`` times. ``stall``: cycles the array waits before each
    step on ports outside the shared channel (a replayed reference's own port model), or None."""

    load_bits: np.ndarray
    compute: np.ndarray
    store_bits: np.ndarray
    repeat: int = 1
    stall: np.ndarray | None = None


@dataclass(frozen=True)
class BatchSteps:
    """The steps of many plans of one op, concatenated; plan ``c`` owns ``[start[c], start[c] + length[c])``."""

    start: np.ndarray
    length: np.ndarray
    load_bits: np.ndarray
    compute: np.ndarray
    store_bits: np.ndarray


@dataclass(frozen=True)
class Variants:
    """Bit variants of one GEMM shape, costed together (usually just one): per variant, the op, its
    storage widths (A, B, write-back, psum: ``(V, 4)``), which of A, B are resident (``(V, 2)``) and
    which of A, B, out are on chip (``(V, 3)``), and the array's cycles per tile kind of each tile size
    (:func:`tile_table`, ``(V, 2, 2, 2, S, tiles)``; ``S`` is 1, not 2, when the array's time does not
    depend on whether a tile starts the streamed dimension: half the table to fill)."""

    ops: tuple[Gemm, ...]
    widths: np.ndarray
    resident: np.ndarray
    onchip: np.ndarray
    tables: np.ndarray

    @classmethod
    def of(cls, ops, accel: Accelerator, widths, resident, onchip, mt, kt, nt) -> Variants:
        """From per-variant widths and operand sets; tables over the tile sizes ``mt, kt, nt``."""
        sizes = _tile_sizes(ops[0], mt, kt, nt)  # bits-independent: shared by every variant's table
        parts = [_tile_table(op, accel, sizes) for op in ops]
        shape = np.broadcast_shapes(*(np.shape(part) for part in parts))
        starts = shape[3] if len(shape) == 5 else 1  # 1: the array's time does not depend on stream starts
        tables = np.empty((len(ops), 2, 2, 2, starts, len(sizes[0][0])), dtype=np.result_type(*parts))
        for table, part in zip(tables, parts, strict=True):
            table[...] = part
        return cls(tuple(ops), np.array(widths, dtype=np.int64).reshape(len(ops), 4),
                   np.array([[x in one for x in "ab"] for one in resident]),
                   np.array([[x in one for x in ("a", "b", "out")] for one in onchip]), tables)

    def overhead(self, accel: Accelerator) -> np.ndarray:
        return np.array([[accel.array.instance_overhead_cycles(op)] for op in self.ops])


def tile_table(op: Gemm, accel: Accelerator, mt, kt, nt) -> np.ndarray:
    """The array's cycles for one tile of each kind ``[last m block?, last k?, last n?, stream start?]``
    (a last block is the dimension's remainder) of each tile size: (2, 2, 2, 2, tiles), one call of the
    array model on broadcast arrays."""
    return np.broadcast_to(_tile_table(op, accel, _tile_sizes(op, mt, kt, nt)), (2, 2, 2, 2, np.size(mt)))


def _tile_sizes(op: Gemm, mt, kt, nt) -> tuple[np.ndarray, ...]:
    """Per dimension, (2, tiles): the full tile and the last block (the dimension's remainder)."""
    return tuple(np.stack([t, dim - (ceil_div(dim, t) - 1) * t])
                 for dim, t in zip((op.m, op.k, op.n), (np.asarray(mt), np.asarray(kt), np.asarray(nt)), strict=True))


def _tile_table(op: Gemm, accel: Accelerator, sizes: tuple[np.ndarray, ...]) -> np.ndarray:
    """:func:`tile_table` from :func:`_tile_sizes`, as the array model returns it (broadcastable)."""
    m, k, n = sizes
    start = np.array([False, True])[None, None, None, :, None]
    return accel.array.tile_cycles(m[:, None, None, None, :], k[None, :, None, None, :], n[None, None, :, None, :],
                                   op, start)


def block_counts(op: Gemm, accel: Accelerator, mt, kt, nt) -> np.ndarray:
    """Tiles of one instance by kind ``[last m block?, last k?, last n?, stream start?]``: (2, 2, 2, 2, tiles),
    the weights of :func:`tile_table` (bits-independent: one per shape serves every bit variant)."""
    m, k, n = (_block_counts(dim, tile, extent is None)
               for dim, tile, extent in zip((op.m, op.k, op.n), (mt, kt, nt), accel.array.extents(op), strict=True))
    starts = np.einsum("xT,yT,zT->xyzT", m[:, 1], k[:, 1], n[:, 1])  # blocks starting all three
    every = np.einsum("xT,yT,zT->xyzT", m.sum(axis=1), k.sum(axis=1), n.sum(axis=1))
    return np.stack([every - starts, starts], axis=3)


def _block_counts(dim: int, tile, streamed: bool) -> np.ndarray:
    """Blocks along one dimension by kind, ``[last block?, starts the streamed dimension?]``: (2, 2, tiles).
    Along a dimension that is not streamed every block counts as a start."""
    count = ceil_div(dim, np.asarray(tile))
    zero = np.zeros_like(count)
    if not streamed:
        return np.stack([np.stack([zero, count - 1]), np.stack([zero, zero + 1])])
    several = (count > 1).astype(np.int64)
    return np.stack([np.stack([np.maximum(count - 2, 0), several]), np.stack([several, 1 - several])])


@dataclass(frozen=True)
class Plans:
    """Plans of a GEMM shape's variants, one column per plan, as :class:`_Rows` reads them (rows of
    per-plan facts gathered into steps by one indexing call).

    ``numbers`` (int64): where the plan's tile table starts in ``table`` and the stride between its
    kinds of last blocks, the instance overhead, storage bits of A and B, write-back bits (0 if the
    output stays on chip), psum bits, the stride to a stream start's entry (0 if the table has none),
    then per m, k, n: loop position, tile, last block index, last block size; and instances (the only
    row not gathered into steps). ``flags`` (bool): spills; A, B fetched on every pass (not resident);
    A, B off chip; m, k, n not streamed (negated where steps need the negation). ``table``: the
    variants' :func:`tile_table` values, flat.
    """

    numbers: np.ndarray
    flags: np.ndarray
    table: np.ndarray

    @classmethod
    def of(cls, op: Gemm, accel: Accelerator, variants: Variants, mt, kt, nt, pm, pk, pn, tile, spill,
           variant) -> Plans:
        """Plans of ``op``'s variants: tiles, loop positions, ``tile`` (the plan's index into the variants'
        tables), ``spill`` (partial sums go to DRAM) and ``variant`` (which of ``variants``), per plan."""
        variant = np.asarray(variant)
        (starts, tiles), plans = variants.tables.shape[4:], len(variant)
        sizes = np.stack([np.asarray(mt), np.asarray(kt), np.asarray(nt)])
        dims = np.array([[op.m], [op.k], [op.n]])
        last = ceil_div(dims, sizes) - 1
        widths = variants.widths[variant].T
        numbers = np.concatenate([
            np.stack([variant * variants.tables[0].size + np.asarray(tile), np.full(plans, tiles * starts),
                      variants.overhead(accel)[variant, 0],
                      widths[0], widths[1], np.where(variants.onchip[variant, 2], 0, widths[2]), widths[3],
                      np.full(plans, tiles * (starts - 1))]),
            np.stack([np.asarray(pm), np.asarray(pk), np.asarray(pn)]), sizes, last, dims - last * sizes,
            np.full((1, plans), op.count)])
        streamed = np.array([[extent is None] for extent in accel.array.extents(op)])
        flags = np.concatenate([np.asarray(spill, dtype=bool).reshape(1, -1), ~variants.resident[variant].T,
                                ~variants.onchip[variant, :2].T, np.broadcast_to(~streamed, (3, plans))])
        return cls(numbers, flags, variants.tables.reshape(-1))

    def __len__(self) -> int:
        return self.numbers.shape[1]

    def __getitem__(self, plans: slice) -> Plans:
        return Plans(self.numbers[:, plans], self.flags[:, plans], self.table)

    def loops(self) -> np.ndarray:
        """Blocks per loop of each plan, outer to inner: shape (3, plans)."""
        return self._by_position(self.numbers[14:17] + 1)

    def even(self) -> np.ndarray:
        """Whether each loop's blocks are all one size (the tile divides the dimension), outer to inner."""
        return self._by_position(self.numbers[17:20] == self.numbers[11:14])

    def _by_position(self, per_dim: np.ndarray) -> np.ndarray:
        per_loop = np.empty_like(per_dim)
        per_loop[self.numbers[8:11], np.arange(len(self))] = per_dim
        return per_loop


class _Rows:
    """Steps (rows) of :class:`Plans` and what they move and compute: ``plan`` says which plan each row
    is of, and the methods take and return one value per row. Per-plan facts are gathered into rows in
    one indexing call (rows outnumber plans)."""

    def __init__(self, plans: Plans, plan):
        facts, flags = plans.numbers[:-1, plan], plans.flags[:, plan]
        self.table = plans.table
        self.base, self.stride, self.overhead, self.sa, self.sb, self.out, self.sp = facts[:7]
        self.start_stride = facts[7]
        self.tiles, self.last, self.edge = facts[11:14], facts[14:17], facts[17:20]
        self.spill, self.refetched, self.offchip, self.fixed = flags[0], flags[1:3], flags[3:5], flags[5:8]
        # where each row's m, k, n indices sit in a stacked (3, rows) array of loop-position indices
        self.gather = facts[8:11] * len(plan) + np.arange(len(plan))

    def dims(self, at: np.ndarray) -> np.ndarray:
        """(m, k, n) block indices, (3, rows), from indices in loop positions (outer to inner, (3, rows))."""
        return at.reshape(-1)[self.gather]

    def _sizes(self, index) -> np.ndarray:
        return np.where(index == self.last, self.edge, self.tiles)

    def compute(self, index, begins) -> np.ndarray:
        """Busy cycles of each step (the first of an instance pays the array's instance overhead)."""
        last = index == self.last
        start = ((index == 0) | self.fixed).all(axis=0)  # at the start of every streamed dimension
        kind = (last[0] * 2 + last[1]) * 2 + last[2]
        return self.table[self.base + kind * self.stride + start * self.start_stride] + begins * self.overhead

    def load_bits(self, index, before, begins) -> np.ndarray:
        """Bits fetched before each step, given the previous step's blocks (unused where it begins)."""
        (im, ik, in_), (pm, pk, pn) = index, before
        m, k, n = self._sizes(index)
        fetch_a = self._fetches(begins | (im != pm) | (ik != pk), in_ == 0, 0)
        fetch_b = self._fetches(begins | (ik != pk) | (in_ != pn), im == 0, 1)
        reopens = (begins | (im != pm) | (in_ != pn)) & (ik > 0)
        return fetch_a * (m * k) * self.sa + fetch_b * (k * n) * self.sb + (self.spill & reopens) * (m * n) * self.sp

    def store_bits(self, index, after, ends) -> np.ndarray:
        """Bits written back after each step, given the next step's blocks (unused where it ends)."""
        (im, ik, in_), (nm, _, nn) = index, after
        m, _, n = self._sizes(index)
        closes = ends | (im != nm) | (in_ != nn)
        final = ik == self.last[1]
        return (closes & final) * (m * n) * self.out + (self.spill & closes & ~final) * (m * n) * self.sp

    def _fetches(self, changed: np.ndarray, first_pass: np.ndarray, operand: int) -> np.ndarray:
        """1 where a step fetches its tile of ``operand`` (0 = A, 1 = B)."""
        return changed & (self.refetched[operand] | first_pass) & self.offchip[operand]


def batch_steps(op: Gemm, accel: Accelerator, variants: Variants, mt, kt, nt, pm, pk, pn, tile, spill,
                variant) -> BatchSteps:
    """Every tile step of every plan (arguments as in :meth:`Plans.of`), in loop order."""
    plans = Plans.of(op, accel, variants, mt, kt, nt, pm, pk, pn, tile, spill, variant)
    loops = plans.loops()
    length = loops[0] * loops[1] * loops[2]
    start = np.r_[0, np.cumsum(length)[:-1]]
    plan = np.repeat(np.arange(len(length)), length)
    step = np.arange(int(length.sum())) - start[plan]
    inner, middle = loops[2][plan], loops[1][plan]
    rows = _Rows(plans, plan)
    cur = rows.dims(np.stack([step // (middle * inner), (step // inner) % middle, step % inner]))
    before = np.concatenate([cur[:, :1], cur[:, :-1]], axis=1)  # the previous step's (unused where it begins)
    after = np.concatenate([cur[:, 1:], cur[:, -1:]], axis=1)  # the next step's (unused where it ends)
    begins, ends = step == 0, step == length[plan] - 1
    return BatchSteps(start, length, rows.load_bits(cur, before, begins), rows.compute(cur, begins),
                      rows.store_bits(cur, after, ends))


def pipeline_totals(op: Gemm, accel: Accelerator, variants: Variants, mt, kt, nt, pm, pk, pn, tile, spill,
                    variant) -> tuple[np.ndarray, np.ndarray]:
    """Per plan (arguments as in :meth:`Plans.of`): exactly what :func:`batch_cycles` gives for its steps
    run ``op.count`` times, and the compute cycles of one instance, from representative steps."""
    return plans_totals(Plans.of(op, accel, variants, mt, kt, nt, pm, pk, pn, tile, spill, variant), accel)


def plans_totals(plans: Plans, accel: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pipeline_totals` of :class:`Plans`, in slices of at most about ``ROWS``
    representative steps (arrays that stay in cache)."""
    loops = plans.loops()
    steps = np.cumsum(np.prod(np.minimum(loops, REPRESENTATIVES), axis=0))
    cuts = np.searchsorted(steps, np.arange(ROWS, steps[-1], ROWS), side="right") if len(steps) else []
    if len(cuts) == 0:
        return _totals(plans, loops, accel)
    parts = [_totals(plans[a:b], loops[:, a:b], accel)
             for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(steps)], strict=True) if b > a]
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def _totals(plans: Plans, loops: np.ndarray, accel: Accelerator):
    """:func:`plans_totals` of one slice, its loops (:meth:`Plans.loops`) known."""
    values, weights = _representatives(loops, plans.even())
    # every combination of the three loops' representatives, per plan: (plans, 4, 4, 4), zero weights dropped
    axes = ((slice(None), slice(None), None, None), (slice(None), None, slice(None), None),
            (slice(None), None, None, slice(None)))
    weight = weights[0][axes[0]] * weights[1][axes[1]] * weights[2][axes[2]]
    keep = np.flatnonzero(weight)
    plan = keep // REPRESENTATIVES ** 3
    at = np.stack([np.broadcast_to(v[axis], weight.shape).reshape(-1)[keep] for v, axis in zip(values, axes,
                                                                                               strict=True)])
    weight = weight.reshape(-1)[keep]
    counts = loops[:, plan]
    before, first = _step(at, counts, -1)
    after, last = _step(at, counts, +1)
    rows = _Rows(plans, plan)
    cur, prev, nxt = rows.dims(at), rows.dims(before), rows.dims(after)
    dram, tick = accel.dram, accel.dram.ticks_per_cycle
    compute = rows.compute(cur, first)
    busy = compute * tick
    next_load = dram.ticks(rows.load_bits(nxt, cur, last))  # after the last step: the next instance's first
    previous_store = dram.ticks(rows.store_bits(prev, cur, first))
    term = np.maximum(busy, next_load + previous_store)
    starts = np.flatnonzero(np.r_[True, plan[1:] != plan[:-1]])
    period, compute_sum = np.add.reduceat(weight * term, starts), np.add.reduceat(weight * compute, starts)
    first, last = np.flatnonzero(first), np.flatnonzero(last)  # each plan's first and last step, in order
    head = term[first] - np.maximum(busy[first], next_load[first])
    tail = term[last] - np.maximum(busy[last], previous_store[last])
    edges = next_load[last] + previous_store[first]  # step 0's load (after the last step), the last's store
    instances = plans.numbers[20]
    single = loops[0] * loops[1] * loops[2] * instances == 1
    total = np.where(single, edges + busy[first], edges + instances * period - head - tail)
    return -(-total // tick), compute_sum


def _representatives(count: np.ndarray, even: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (loops, plans, 4): a loop of ``count`` blocks as four weighted indices.
    Index c-2 differs from the middle ones only in that the next block is the last, smaller one; in a
    loop of ``even`` blocks it is not, and the middle index stands for it too (weight c-2)."""
    count, even = np.asarray(count)[..., None], np.asarray(even)[..., None]
    short = np.arange(REPRESENTATIVES)
    first_two = np.broadcast_to(short[:2], count.shape[:-1] + (2,))
    long = np.concatenate([first_two, count - 2, count - 1], axis=-1)
    middle = np.array([1, 0, 1, 1]) + np.array([0, 1, -1, 0]) * even + np.array([0, 1, 0, 0]) * (count - 3)
    values = np.where(count >= REPRESENTATIVES, long, np.minimum(short, count - 1))
    weights = np.where(count >= REPRESENTATIVES, middle, short < count)
    return values, weights.astype(np.int64)


def _step(at: np.ndarray, counts: np.ndarray, direction: int):
    """Block indices (outer to inner, (3, rows)) of the step before (-1) / after (+1) each step, wrapping
    into the previous / next instance; and whether each step is the instance's first (-1) / last (+1)."""
    at_end = at == (0 if direction < 0 else counts - 1)
    carry = np.ones_like(at_end)  # the innermost loop always moves; an outer one when all inner ones wrap
    carry[1] = at_end[2]
    carry[0] = at_end[2] & at_end[1]
    wraps = carry & at_end
    return at + direction * (carry - wraps * counts), wraps[0]


def batch_cycles(steps: BatchSteps, repeat: int, accel: Accelerator) -> np.ndarray:
    """Per plan, what :func:`pipeline_cycles` gives for its steps run ``repeat`` times (vectorised)."""
    dram = accel.dram
    tick = dram.ticks_per_cycle
    loads, stores, compute = dram.ticks(steps.load_bits), dram.ticks(steps.store_bits), steps.compute * tick
    first, last = steps.start, steps.start + steps.length - 1
    index = np.arange(len(compute))
    following = index + 1
    following[last] = first  # the next instance's first step
    previous = index - 1
    previous[first] = last  # the previous instance's last step
    next_load, previous_store = loads[following], stores[previous]
    period = np.add.reduceat(np.maximum(compute, next_load + previous_store), first)
    head = np.maximum(compute[first], next_load[first] + previous_store[first]) - \
        np.maximum(compute[first], next_load[first])
    tail = np.maximum(compute[last], next_load[last] + previous_store[last]) - \
        np.maximum(compute[last], previous_store[last])
    total = loads[first] + repeat * period - head - tail + stores[last]
    single = loads[first] + compute[first] + stores[first]
    return -(-np.where(steps.length * repeat == 1, single, total) // tick)


def pipeline_cycles(steps: Steps, accel: Accelerator) -> int:
    """Exact time of ``steps`` run ``repeat`` times lock-step through the double-buffered pipeline.

    Step i costs ``max(C_i, L_{i+1} + S_{i−1})`` (DRAM fetches the next step's inputs, then
    writes back what the previous step finished); add the first load and the last store. Times are
    in the channel's ticks (:attr:`hwsim.Dram.ticks_per_cycle`); the total rounds up to whole cycles.
    """
    dram = accel.dram
    tick = dram.ticks_per_cycle
    loads, stores = dram.ticks(steps.load_bits), dram.ticks(steps.store_bits)
    compute, repeat, n = steps.compute * tick, steps.repeat, len(steps.compute)
    waits = 0 if steps.stall is None else repeat * int(steps.stall.sum())
    if n * repeat == 1:
        return ceil_div(int(loads[0] + compute[0] + stores[0]), tick) + waits
    period = int(np.maximum(compute, np.roll(loads, -1) + np.roll(stores, 1)).sum())
    first = max(compute[0], loads[1 % n] + stores[-1]) - max(compute[0], loads[1 % n])
    last = max(compute[-1], loads[0] + stores[n - 2]) - max(compute[-1], stores[n - 2])
    return ceil_div(int(loads[0] + repeat * period - first - last + stores[-1]), tick) + waits
