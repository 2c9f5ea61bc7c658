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
``max(C_i, L_{i+1} + S_{i−1})`` (:mod:`hwsim.pipeline`; the simpy engine schedules exactly this).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.errors import HwsimError, TileError
from hwsim.pipeline import DIMS, Steps, Variants, batch_steps, block_counts, pipeline_totals, tile_table
from hwsim.workload import VECTOR_KINDS, Gemm, VectorOp


def blocks(dim: int, tile: int) -> np.ndarray:
    """Block sizes along one dimension: full tiles then the remainder."""
    full, rest = divmod(dim, tile)
    return np.array((tile,) * full + ((rest,) if rest else ()), dtype=np.int64)


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

    def pipeline(self, accel: Accelerator) -> tuple[int, int]:
        """Exact cycles of the op (all instances through the pipeline) and compute cycles of one instance:
        the totals of :meth:`steps`, in closed form (:func:`hwsim.pipeline.pipeline_totals`)."""
        cycles, compute = pipeline_totals(self.op, accel, *self._batch(accel))
        return int(cycles[0]), int(compute[0])

    def steps(self, accel: Accelerator) -> Steps:
        """The tiles of one instance in loop order, as the event simulation runs them."""
        batch = batch_steps(self.op, accel, *self._batch(accel))
        return Steps(batch.load_bits, batch.compute, batch.store_bits, self.op.count)

    def _batch(self, accel: Accelerator) -> tuple:
        """This plan as the batch functions' arguments: its variant facts, tiles, loop positions, spill."""
        tiles = [np.array([x]) for x in (self.mt, self.kt, self.nt)]
        variants = Variants.of([self.op], accel, [(self.bits_a, self.bits_b, self.bits_out, self.psum_bits)],
                               [self.resident], [self.onchip], *tiles)
        return (variants, *tiles, *(np.array([self.order.index(d)]) for d in DIMS), np.array([0]),
                np.array([self.spills]), np.array([0]))


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


def _folds(dim: int, tile, extent: int | None):
    """Array passes over one dimension: per block, ceil(size / extent), or 1 if it is streamed."""
    full, rest = np.divmod(dim, tile)
    if extent is None:
        return full + (rest > 0)
    return full * ceil_div(tile, extent) + ceil_div(rest, extent)


def array_terms(op: Gemm, accel: Accelerator, mt, kt, nt) -> tuple[np.ndarray, ...]:
    """What of a plan's metrics the array's precision decides, per tile size (1-D arrays): compute cycles
    of one instance, and the array passes over n, m and k (per block ``ceil(size / extent)``, 1 per
    block if streamed)."""
    terms = variant_terms((op,), accel, mt, kt, nt, block_counts(op, accel, mt, kt, nt),
                          tile_table(op, accel, mt, kt, nt)[None])
    return tuple(t[0] for t in terms)


def variant_terms(ops, accel: Accelerator, mt, kt, nt, counts: np.ndarray,
                  tables: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`array_terms` of bit variants of one shape, each (variants, tiles), from the shape's
    :func:`block_counts` and the variants' :func:`tile_table` stacked: one contraction for every
    variant's compute cycles, and each distinct extent's passes computed once."""
    overhead = np.array([[accel.array.instance_overhead_cycles(op)] for op in ops])
    if tables.shape[4] == 1:  # the array's time does not depend on stream starts: one entry for both
        counts = counts.sum(axis=3, keepdims=True)
    compute = overhead + np.einsum("abcdT,vabcdT->vT", counts, tables)
    folds: dict[tuple, np.ndarray] = {}

    def passes(dim: int, tile, extent: int | None) -> np.ndarray:
        if (dim, extent) not in folds:
            folds[dim, extent] = np.broadcast_to(_folds(dim, tile, extent), compute.shape[1:])
        return folds[dim, extent]

    extents = [accel.array.extents(op) for op in ops]
    return compute, *(np.stack([passes(dim, tile, extent[axis]) for extent in extents])
                      for dim, tile, axis in ((ops[0].n, nt, 2), (ops[0].m, mt, 0), (ops[0].k, kt, 1)))


def refetches(nm, nk, nn, pm, pk, pn) -> tuple[np.ndarray, np.ndarray]:
    """How often a plan fetches all of A and all of B per instance unless resident: once, or once per
    block of the loop that does not index the operand when that loop runs outside the operand's own
    (bits-independent: the mapper computes it once per shape)."""
    inner_a = np.maximum(np.where(nm > 1, pm, -1), np.where(nk > 1, pk, -1))
    inner_b = np.maximum(np.where(nk > 1, pk, -1), np.where(nn > 1, pn, -1))
    return np.where((nn > 1) & (pn < inner_a), nn, 1), np.where((nm > 1) & (pm < inner_b), nm, 1)


def gemm_metrics(op: Gemm, accel: Accelerator, mt, kt, nt, pm, pk, pn, *, spill, resident, onchip,
                 widths: tuple, terms: tuple | None = None, sram: bool = True) -> dict[str, np.ndarray]:
    """Per-instance compute cycles, DRAM bits, SRAM bits and pipeline ends of plans, vectorised.

    ``mt, kt, nt`` are tile sizes and ``pm, pk, pn`` the positions (0 = outer) of the m, k, n loops,
    as ints or equal-shape arrays; ``spill`` (bool or array) says partial sums go to DRAM between
    revisits; ``resident`` / ``onchip`` as in :class:`GemmPlan` (or, per plan, operand -> bool array);
    ``widths`` = storage bits of A, B, write-back bits, psum bits (ints or per-plan arrays); ``terms``:
    :func:`array_terms` when already known (bit variants priced together); ``sram=False`` leaves out
    the SRAM traffic (a cycle bound does not need it). A single plan's
    :meth:`GemmPlan.steps` sums to the same numbers.
    """
    sa, sb, so, sp = widths
    m_all, k_all, n_all = op.m, op.k, op.n
    nm, nk, nn = ceil_div(m_all, mt), ceil_div(k_all, kt), ceil_div(n_all, nt)
    if terms is None:
        shape = np.broadcast(mt, kt, nt).shape
        terms = (x.reshape(shape) for x in array_terms(op, accel, *(np.broadcast_to(t, shape).ravel()
                                                                     for t in (mt, kt, nt))))
    compute, folds_n, folds_m, psum_passes = terms
    held_a, held_b, held_out = (placed(onchip, x) for x in ("a", "b", "out"))
    a_fetches, b_fetches = refetches(nm, nk, nn, pm, pk, pn)
    a_times = np.where(placed(resident, "a"), 1, a_fetches)
    b_times = np.where(placed(resident, "b"), 1, b_fetches)
    a_bits = np.where(held_a, 0, m_all * k_all * sa * a_times)
    b_bits = np.where(held_b, 0, k_all * n_all * sb * b_times)
    out_bits = np.where(held_out, 0, so)
    spilled = np.where(spill & _revisits(nm, nk, nn, pm, pk, pn), m_all * n_all * sp * (nk - 1), 0)
    last_m, last_n = m_all - (nm - 1) * mt, n_all - (nn - 1) * nt
    zero = np.zeros(np.broadcast(mt, kt, nt, pm).shape, dtype=np.int64)
    metrics = {
        "compute": zero + compute,
        "dram_read": zero + a_bits + b_bits + spilled,
        "dram_write": zero + m_all * n_all * out_bits + spilled,
        "first_load": zero + np.where(held_a, 0, mt * kt * sa) + np.where(held_b, 0, kt * nt * sb),
        "last_store": zero + last_m * last_n * out_bits,
    }
    if not sram:
        return metrics
    return {
        **metrics,
        "sram_read_ifmap": zero + m_all * k_all * sa * folds_n,
        "sram_read_filter": zero + k_all * n_all * sb * folds_m,
        "sram_read_ofmap": zero + m_all * n_all * (sp * (psum_passes - 1) + so) + spilled,
        "sram_write_ifmap": zero + a_bits,
        "sram_write_filter": zero + b_bits,
        "sram_write_ofmap": zero + m_all * n_all * sp * psum_passes + spilled,
    }


def placed(where, operand: str):
    """Whether ``operand`` is in a placement: a set of operands (one plan), or operand -> bool per plan."""
    return operand in where if isinstance(where, (set, frozenset)) else where[operand]


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
