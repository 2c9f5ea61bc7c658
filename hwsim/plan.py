"""A mapping of one op onto an accelerator, and everything it implies: tiles in loop order, traffic.

:class:`GemmPlan` is the whole mapping of a GEMM instance: tile sizes ``mt×kt×nt`` (edge
blocks are smaller), the loop nest ``order`` over blocks (outer to inner, e.g. ``"nmk"``),
where partial sums wait between two k-steps of an output block that the nest does not run back
to back (``psum``: the output ``buffer``, or spilled to ``dram`` and re-read at ``psum_bits``),
the operands fetched whole once per instance and kept (``resident``), the data held on chip
between layers (``onchip``, DaDianNao-style eDRAM: no DRAM traffic at all), and the widths
everything is stored and written back at. Any plan, found by :mod:`hwsim.mapper` or replayed from
a reference simulator, is costed by the same code: :func:`gemm_metrics` (closed-form traffic and
compute, vectorised over many candidate plans at once) and :meth:`GemmPlan.steps` (the tile
sequence the event simulation runs; its totals equal the closed form).

Steps run lock-step through the double-buffered pipeline: while the array computes step i, DRAM
fetches step i+1's new inputs and then writes back what step i−1 finished, so step i takes
``max(C_i, L_{i+1} + S_{i−1})`` (:func:`pipeline_cycles`; the simpy engine schedules exactly this).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.errors import HwsimError, TileError
from hwsim.workload import VECTOR_KINDS, Gemm, VectorOp

DIMS = "mkn"


def blocks(dim: int, tile: int) -> np.ndarray:
    """Block sizes along one dimension: full tiles then the remainder."""
    full, rest = divmod(dim, tile)
    return np.array((tile,) * full + ((rest,) if rest else ()), dtype=np.int64)


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
class GemmPlan:
    """One mapping of ``op`` (see the module docstring); ``bits_*`` are storage / write-back widths."""

    op: Gemm
    mt: int
    kt: int
    nt: int
    order: str
    psum: str
    bits_a: int
    bits_b: int
    bits_out: int
    psum_bits: int
    resident: frozenset[str] = field(default_factory=frozenset)
    onchip: frozenset[str] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        spill = "/psum-dram" if self.spills else ""
        return f"{self.mt}x{self.kt}x{self.nt}/{self.order}{spill}"

    @property
    def counts(self) -> tuple[int, int, int]:
        """Blocks along (m, k, n)."""
        op = self.op
        return ceil_div(op.m, self.mt), ceil_div(op.k, self.kt), ceil_div(op.n, self.nt)

    @property
    def revisits(self) -> bool:
        """Whether the nest leaves an output block between two of its k-steps."""
        return bool(_revisits(*self.counts, *(self.order.index(d) for d in DIMS)))

    @property
    def spills(self) -> bool:
        return self.psum == "dram" and self.revisits

    def metrics(self, accel: Accelerator) -> dict[str, int]:
        """Closed-form traffic and compute of one instance (see :func:`gemm_metrics`)."""
        values = gemm_metrics(self.op, accel, self.mt, self.kt, self.nt, *(self.order.index(d) for d in DIMS),
                              spill=self.spills, resident=self.resident, onchip=self.onchip,
                              widths=(self.bits_a, self.bits_b, self.bits_out, self.psum_bits))
        return {key: int(value) for key, value in values.items()}

    def steps(self, accel: Accelerator) -> Steps:
        """The tiles of one instance in loop order, as the event simulation runs them."""
        batch = batch_steps(self.op, accel, *(np.array([x]) for x in (self.mt, self.kt, self.nt)),
                            *(np.array([self.order.index(d)]) for d in DIMS), spill=np.array([self.spills]),
                            resident=self.resident, onchip=self.onchip,
                            widths=(self.bits_a, self.bits_b, self.bits_out, self.psum_bits))
        return Steps(batch.load_bits, batch.compute, batch.store_bits, self.op.count)


@dataclass(frozen=True)
class BatchSteps:
    """The steps of many plans of one op, concatenated; plan ``c`` owns ``[start[c], start[c] + length[c])``."""

    start: np.ndarray
    length: np.ndarray
    load_bits: np.ndarray
    compute: np.ndarray
    store_bits: np.ndarray


def batch_steps(op: Gemm, accel: Accelerator, mt, kt, nt, pm, pk, pn, *, spill, resident, onchip,
                widths: tuple[int, int, int, int]) -> BatchSteps:
    """Every tile step of every plan ``(mt, kt, nt, loop positions, spill)`` (equal-length arrays), in
    loop order: a step fetches an operand tile when it differs from the previous step's (only at
    first touch if resident, never if on chip), re-reads spilled partial sums when it reopens an output
    block, and writes the block back when it leaves it (outputs after the last k-step, else spilled
    partial sums)."""
    array = accel.array
    sa, sb, so, sp = widths
    nm, nk, nn = ceil_div(op.m, mt), ceil_div(op.k, kt), ceil_div(op.n, nt)
    per_position = np.stack([np.select([pm == p, pk == p], [nm, nk], nn) for p in range(3)])
    length = nm * nk * nn
    start = np.r_[0, np.cumsum(length)[:-1]]
    plan = np.repeat(np.arange(len(length)), length)
    step = np.arange(int(length.sum())) - start[plan]
    inner, middle = per_position[2][plan], per_position[1][plan]
    at = np.stack([step // (middle * inner), (step // inner) % middle, step % inner])
    columns = np.arange(len(step))
    im, ik, in_ = (at[position[plan], columns] for position in (pm, pk, pn))
    nm, nk, nn, mt, kt, nt = (x[plan] for x in (nm, nk, nn, mt, kt, nt))
    m = np.where(im == nm - 1, op.m - (nm - 1) * mt, mt)
    k = np.where(ik == nk - 1, op.k - (nk - 1) * kt, kt)
    n = np.where(in_ == nn - 1, op.n - (nn - 1) * nt, nt)
    begins = step == 0
    stream_start = np.ones_like(begins)
    for index, extent in zip((im, ik, in_), array.extents(op), strict=True):
        if extent is None:
            stream_start &= index == 0
    compute = np.asarray(array.tile_cycles(m, k, n, op, stream_start), dtype=np.int64) * np.ones_like(m)
    compute = compute + np.where(begins, array.instance_overhead_cycles(op), 0)
    load = (_fetches(im * nk + ik, begins, in_ == 0, "a", resident, onchip) * m * k * sa
            + _fetches(ik * nn + in_, begins, im == 0, "b", resident, onchip) * k * n * sb)
    block = im * nn + in_
    opens = begins | np.r_[True, block[1:] != block[:-1]]
    closes = np.r_[begins[1:], True] | np.r_[block[1:] != block[:-1], True]
    final = ik == nk - 1
    spilled = spill[plan]
    load = load + np.where(spilled & opens & (ik > 0), m * n * sp, 0)
    store = np.where(closes & final, m * n * (0 if "out" in onchip else so), 0)
    store = store + np.where(spilled & closes & ~final, m * n * sp, 0)
    return BatchSteps(start, length, load, compute, store)


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


def _fetches(key: np.ndarray, begins: np.ndarray, first_pass: np.ndarray, operand: str, resident,
             onchip) -> np.ndarray:
    """1 where a step fetches its tile of ``operand``: never if on chip, else whenever the tile differs
    from the previous step's, and if resident only on the first pass of the loop that does not index
    it (index 0: every later visit of a tile repeats one from that pass)."""
    if operand in onchip:
        return np.zeros_like(key)
    changed = begins | np.r_[True, key[1:] != key[:-1]]
    return (changed & first_pass if operand in resident else changed).astype(np.int64)


def _revisits(nm, nk, nn, pm, pk, pn):
    """True where an output block's k-steps are not run back to back (vectorised)."""
    return (nk > 1) & (((nm > 1) & (pm > pk)) | ((nn > 1) & (pn > pk)))


def _classes(dim: int, tile, streamed: bool):
    """(block size, how many, starts the streamed dimension) classes along one dimension."""
    full, rest = np.divmod(dim, tile)
    if not streamed:
        return [(tile, full, True), (rest, (rest > 0).astype(np.int64), True)]
    return [(tile, np.minimum(full, 1), True), (tile, np.maximum(full - 1, 0), False),
            (rest, (rest > 0) & (full == 0), True), (rest, (rest > 0) & (full > 0), False)]


def _folds(dim: int, tile, extent: int | None):
    """Array passes over one dimension: per block, ceil(size / extent), or 1 if it is streamed."""
    full, rest = np.divmod(dim, tile)
    if extent is None:
        return full + (rest > 0)
    return full * ceil_div(tile, extent) + ceil_div(rest, extent)


def gemm_metrics(op: Gemm, accel: Accelerator, mt, kt, nt, pm, pk, pn, *, spill, resident, onchip,
                 widths: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """Per-instance compute cycles, DRAM bits, SRAM bits and pipeline ends of plans, vectorised.

    ``mt, kt, nt`` are tile sizes and ``pm, pk, pn`` the positions (0 = outer) of the m, k, n loops,
    as ints or equal-shape arrays; ``spill`` (bool or array) says partial sums go to DRAM between
    revisits; ``resident`` / ``onchip`` as in :class:`GemmPlan`; ``widths`` = storage bits of A, B,
    write-back bits, psum bits. A single plan's :meth:`GemmPlan.steps` sums to the same numbers.
    """
    array = accel.array
    sa, sb, so, sp = widths
    m_all, k_all, n_all = op.m, op.k, op.n
    nm, nk, nn = ceil_div(m_all, mt), ceil_div(k_all, kt), ceil_div(n_all, nt)
    extents = array.extents(op)
    classes = [_classes(dim, tile, extent is None)
               for dim, tile, extent in zip((m_all, k_all, n_all), (mt, kt, nt), extents, strict=True)]
    compute = array.instance_overhead_cycles(op)
    for sm, cm, fm in classes[0]:
        for sk, ck, fk in classes[1]:
            for sn, cn, fn in classes[2]:
                compute = compute + cm * ck * cn * array.tile_cycles(sm, sk, sn, op, fm and fk and fn)
    inner_a = np.maximum(np.where(nm > 1, pm, -1), np.where(nk > 1, pk, -1))
    inner_b = np.maximum(np.where(nk > 1, pk, -1), np.where(nn > 1, pn, -1))
    a_times = 1 if "a" in resident else np.where((nn > 1) & (pn < inner_a), nn, 1)
    b_times = 1 if "b" in resident else np.where((nm > 1) & (pm < inner_b), nm, 1)
    a_bits = 0 if "a" in onchip else m_all * k_all * sa * a_times
    b_bits = 0 if "b" in onchip else k_all * n_all * sb * b_times
    out_bits = 0 if "out" in onchip else so
    spilled = np.where(spill & _revisits(nm, nk, nn, pm, pk, pn), m_all * n_all * sp * (nk - 1), 0)
    psum_passes = _folds(k_all, kt, extents[1])
    last_m, last_n = m_all - (nm - 1) * mt, n_all - (nn - 1) * nt
    zero = np.zeros(np.broadcast(mt, kt, nt, pm).shape, dtype=np.int64)
    return {
        "compute": zero + compute,
        "dram_read": zero + a_bits + b_bits + spilled,
        "dram_write": zero + m_all * n_all * out_bits + spilled,
        "first_load": zero + (0 if "a" in onchip else mt * kt * sa) + (0 if "b" in onchip else kt * nt * sb),
        "last_store": zero + last_m * last_n * out_bits,
        "sram_read_ifmap": zero + m_all * k_all * sa * _folds(n_all, nt, extents[2]),
        "sram_read_filter": zero + k_all * n_all * sb * _folds(m_all, mt, extents[0]),
        "sram_read_ofmap": zero + m_all * n_all * (sp * (psum_passes - 1) + so) + spilled,
        "sram_write_ifmap": zero + a_bits,
        "sram_write_filter": zero + b_bits,
        "sram_write_ofmap": zero + m_all * n_all * sp * psum_passes + spilled,
    }


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


@dataclass(frozen=True)
class VectorPlan:
    """A vector op cut into buffer-sized chunks; ``onchip`` when its data stays in on-chip memory."""

    op: VectorOp
    chunk: int
    onchip: bool = False

    @property
    def label(self) -> str:
        return f"{self.chunk}"

    @property
    def inputs(self) -> int:
        return VECTOR_KINDS[self.op.kind].inputs

    def steps(self, accel: Accelerator) -> Steps:
        op = self.op
        chunks = blocks(op.elements, self.chunk)
        bits = 0 if self.onchip else op.bits
        compute = np.ceil(chunks * vector_rate(op, accel) / accel.vector.lanes).astype(np.int64)
        return Steps(chunks * bits * self.inputs, compute, chunks * bits)


def vector_rate(op: VectorOp, accel: Accelerator) -> float:
    return _vector_constant(op, accel, "cycles_per_element")


def vector_energy_per_element(op: VectorOp, accel: Accelerator) -> float:
    return _vector_constant(op, accel, "energy_pj_per_element")


def _vector_constant(op: VectorOp, accel: Accelerator, table: str) -> float:
    """The preset's ``vector.<table>`` entry for the op's kind; a missing one names the YAML key to add."""
    try:
        return getattr(accel.vector, table)[op.kind]
    except KeyError:
        raise HwsimError(
            f"op '{op.name}': accelerator '{accel.name}' has no vector.{table}.{op.kind}; add it to its YAML"
        ) from None


def too_big(op_name: str, what: str, bits: int, shape: str, need_bits: int, buffer: str,
            accel: Accelerator) -> TileError:
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
        raise too_big(op.name, "one element", op.bits, "1", 2 * op.bits * inputs, buffer, accel)
    vector_rate(op, accel)
    vector_energy_per_element(op, accel)
    onchip = ("activations" in accel.memory.onchip
              and op.elements * op.bits * (inputs + 1) <= accel.buffers.bits("ifmap"))
    return VectorPlan(op, chunk, onchip)
