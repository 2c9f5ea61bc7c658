"""Grouped GEMMs and token vector ops on a token-aware preset (one with a ``tokens`` section, see
:mod:`hwsim.tokens`): the mapping choices its capabilities open, and their exact cost.

A grouped GEMM is one mappable unit for the mapper (:mod:`hwsim.mapper`): the same search grid of
tiles × loop orders × partial-sum placement, with resident operands and on-chip data decided by the
preset's facts, except that tile boundaries are aligned to the groups (a tile runs at one pair of
bits) — or, a mapping choice too, a dimension's groups run together at the op's own bits (a bit-serial
array whose columns would otherwise be split between key groups keeps them whole). With ``shared_operand`` the groups share one loop nest, so residency and the loop order keep
an operand shared by several groups on chip as in the plain GEMM (else one nest per group pair, each
fetching its own operands); with ``grouped_reduction`` depth groups accumulate into the same partial
sums (else a nest per depth group, partial outputs written back and added by the vector unit). The
candidates are ordered by their exact compute cycles (vectorised, per group pair) against their DRAM
time, and the most promising ones are costed exactly — the steps ``simulate`` and ``estimate`` both run.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwsim.accelerator import BUFFERS, Accelerator
from hwsim.cost import _static_pj, sram_pj, vector_cost
from hwsim.grid import candidates
from hwsim.mapper import _legal, _objective, _resident, onchip, widths
from hwsim.pipeline import DIMS, Steps, pipeline_cycles
from hwsim.plan import _fetches, _revisits, blocks, gemm_metrics, plan_vector, vector_rate
from hwsim.result import OpCost
from hwsim.tokens import capabilities, subword_factor
from hwsim.workload import Gemm, VectorOp

EXACT = 32  # candidates costed exactly per grouped GEMM, best-ordered first
Segment = tuple[int, int]  # (size, bits) of one token group along a dimension


@dataclass(frozen=True)
class Loop:
    """One loop nest of a grouped GEMM: its groups along m, k and n (run as one GEMM, tiles aligned to them)."""

    m: tuple[Segment, ...]
    k: tuple[Segment, ...]
    n: tuple[Segment, ...]

    def size(self, dim: str) -> int:
        return sum(size for size, _ in getattr(self, dim))


@dataclass(frozen=True)
class GroupedPlan:
    """A grouped GEMM's mapping: tiles, loop order, psum placement, the loop nests it runs one after another,
    and widths (storage of A, B, write-back, psum, at the op's allocated bits)."""

    op: Gemm
    mt: int
    kt: int
    nt: int
    order: str
    psum: str
    loops: tuple[Loop, ...]
    widths: tuple[int, int, int, int]
    onchip: frozenset[str]
    requant: bool
    gather: bool
    merges: int  # depth groups whose partial outputs the vector unit adds (0 with grouped_reduction)
    merged: frozenset[str] = frozenset()  # grouped dimensions run together at the op's own bits

    def grouped(self, dim: str) -> bool:
        """Whether the tiles along ``dim`` run at their token groups' bits (gathered, requantized on load)."""
        groups = {"m": self.op.row_groups, "k": self.op.depth_groups, "n": self.op.col_groups}[dim]
        return bool(groups) and dim not in self.merged

    @property
    def label(self) -> str:
        spill = "/psum-dram" if self.psum == "dram" else ""
        grouped = "".join(d for d in DIMS if self.grouped(d)) or "-"
        return f"{self.mt}x{self.kt}x{self.nt}/{self.order}{spill}, {len(self.loops)} loop(s), groups on {grouped}"

    def merge_op(self) -> VectorOp | None:
        """Per instance: the adds of depth groups' partial outputs when they cannot stay in the output buffer."""
        op = self.op
        return VectorOp(f"{op.name}.merge", "add", self.merges * op.m * op.n, op.out_bits) if self.merges else None

    def steps(self, accel: Accelerator) -> Steps:
        """The tiles of one instance, loop nest after loop nest, then the merge (what ``simulate`` runs)."""
        t = _tiles(self, accel)
        load, compute, store = t["load"], t["compute"], t["store"]
        merge = self.merge_op()
        if merge is not None:
            extra = plan_vector(merge, accel).steps(accel)
            load, compute, store = (np.concatenate([a, b]) for a, b in
                                    ((load, extra.load_bits), (compute, extra.compute), (store, extra.store_bits)))
        return Steps(load, compute, store, self.op.count)


def _loops(op: Gemm, shared: bool, reduction: bool, merged: frozenset[str] = frozenset()) -> tuple[Loop, ...]:
    """The loop nests: one for the whole GEMM when the groups share it, else one per group (pair). A
    ``merged`` dimension runs its groups together at the op's own bits (tiles may then span groups)."""
    m = (() if "m" in merged else tuple(op.row_groups)) or ((op.m, op.bits_a),)
    k = (() if "k" in merged else tuple(op.depth_groups)) or ((op.k, op.bits_b),)
    n = (() if "n" in merged else tuple(op.col_groups)) or ((op.n, op.bits_b),)
    outer = [(m, n)] if shared else [((row,), (col,)) for row in m for col in n]
    depth = [k] if reduction else [(seg,) for seg in k]
    return tuple(Loop(rows, ks, cols) for rows, cols in outer for ks in depth)


def _blocks(segments: tuple[Segment, ...], tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block sizes, bits and "first block of its group" along one dimension, tiles never crossing a group."""
    sizes = [blocks(size, min(tile, size)) for size, _ in segments]
    bits = [np.full(len(s), b) for s, (_, b) in zip(sizes, segments, strict=True)]
    starts = [np.arange(len(s)) == 0 for s in sizes]
    return np.concatenate(sizes), np.concatenate(bits), np.concatenate(starts)


@lru_cache(maxsize=4096)
def _sub_op(m: int, k: int, n: int, bits_a: int, bits_b: int, count: int, kind: str, out: int) -> Gemm:
    """The ungrouped GEMM a tile belongs to: its loop's sizes at the tile's bits (what the PE model times)."""
    return Gemm("_", m, k, n, bits_a, bits_b, count, kind, out)


def _storage(plan: GroupedPlan, accel: Accelerator, bits: np.ndarray, operand: str) -> np.ndarray:
    """Bits one element occupies in memory: the allocated width under requant on load, else its group's."""
    if plan.requant:
        return np.full(len(bits), plan.widths[0 if operand == "a" else 1])
    return np.array([accel.memory.storage_bits(int(b), operand) for b in bits], dtype=np.int64)


def _tiles(plan: GroupedPlan, accel: Accelerator) -> dict[str, np.ndarray]:
    """Per tile of one instance (all loop nests, in order): sizes, bits, fetches, compute, traffic, SRAM
    accesses and MAC energy."""
    op, array = plan.op, accel.array
    _, _, so, sp = plan.widths
    out_bits = 0 if "out" in plan.onchip else so
    tables = []
    for loop in plan.loops:
        size, bits, start = zip(*(_blocks(getattr(loop, d), tile) for d, tile in zip(DIMS, (plan.mt, plan.kt, plan.nt),
                                                                                        strict=True)), strict=True)
        counts = dict(zip(DIMS, (len(s) for s in size), strict=True))
        shape = tuple(counts[d] for d in plan.order)
        flat = np.indices(shape).reshape(3, -1)
        index = {d: flat[plan.order.index(d)] for d in DIMS}
        m, k, n = (size[i][index[d]] for i, d in enumerate(DIMS))
        bits_a = bits[0][index["m"]]
        bits_b = bits[1][index["k"]] if op.depth_groups else bits[2][index["n"]]
        fits = _resident(_sub_op(loop.size("m"), loop.size("k"), loop.size("n"), op.bits_a, op.bits_b, op.count,
                                 op.kind, op.out_bits), accel, plan.onchip)  # at the widest storage: never overfull
        nm, nk, nn = (counts[d] for d in DIMS)
        begins = np.arange(len(index["m"])) == 0
        fetch_a = _fetches(key=index["m"] * nk + index["k"], begins=begins, first_pass=index["n"] == 0, operand="a",
                           resident=fits, onchip=plan.onchip)
        fetch_b = _fetches(key=index["k"] * nn + index["n"], begins=begins, first_pass=index["m"] == 0, operand="b",
                           resident=fits, onchip=plan.onchip)
        sa, sb = _storage(plan, accel, bits_a, "a"), _storage(plan, accel, bits_b, "b")
        compute, mac_pj = np.zeros(len(m), dtype=np.int64), np.zeros(len(m))
        folds = {d: np.ones(len(m), dtype=np.int64) for d in DIMS}
        streamed_start = np.ones(len(m), dtype=bool)
        for pair in {(int(a), int(b)) for a, b in zip(bits_a, bits_b, strict=True)}:
            sub = _sub_op(loop.size("m"), loop.size("k"), loop.size("n"), *pair, op.count, op.kind, op.out_bits)
            sel = (bits_a == pair[0]) & (bits_b == pair[1])
            extents = array.extents(sub)
            for i, (d, extent) in enumerate(zip(DIMS, extents, strict=True)):
                if extent is None:
                    streamed_start[sel] &= start[i][index[d]][sel]
                else:
                    folds[d][sel] = -(-np.array((m, k, n)[i][sel]) // extent)
            compute[sel] = array.tile_cycles(m[sel], k[sel], n[sel], sub, streamed_start[sel])
            mac_pj[sel] = m[sel] * k[sel] * n[sel] * array.mac_energy_pj(sub)
        first_sub = _sub_op(loop.size("m"), loop.size("k"), loop.size("n"), int(bits_a[0]), int(bits_b[0]),
                            op.count, op.kind, op.out_bits)
        compute[0] += array.instance_overhead_cycles(first_sub)
        block = index["m"] * nn + index["n"]
        opens, closes = np.r_[True, block[1:] != block[:-1]], np.r_[block[1:] != block[:-1], True]
        first_k, last_k = index["k"] == 0, index["k"] == nk - 1
        spill = plan.psum == "dram" and bool(_revisits(nm, nk, nn, *(plan.order.index(d) for d in DIMS)))
        spill_in = np.where(opens & ~first_k, m * n * sp, 0) if spill else np.zeros(len(m), dtype=np.int64)
        spill_out = np.where(closes & ~last_k, m * n * sp, 0) if spill else np.zeros(len(m), dtype=np.int64)
        a_in, b_in = fetch_a * m * k * sa, fetch_b * k * n * sb
        tables.append({
            "m": m, "k": k, "n": n, "bits_a": bits_a, "bits_b": bits_b, "fetch_a": fetch_a, "fetch_b": fetch_b,
            "compute": compute, "mac_pj": mac_pj, "a_in": a_in, "b_in": b_in,
            "load": a_in + b_in + spill_in, "store": np.where(closes & last_k, m * n * out_bits, 0) + spill_out,
            "dram_write": np.where(closes & last_k, m * n * out_bits, 0) + spill_out,
            "sram_read_ifmap": m * k * sa * folds["n"], "sram_read_filter": k * n * sb * folds["m"],
            "sram_read_ofmap": m * n * (sp * folds["k"] - np.where(first_k, sp, 0) + np.where(last_k, so, 0))
            + spill_in,
            "sram_write_ifmap": a_in, "sram_write_filter": b_in, "sram_write_ofmap": m * n * sp * folds["k"] + spill_out,
        })
    return {key: np.concatenate([t[key] for t in tables]) for key in tables[0]}


def plan_grouped(op: Gemm, accel: Accelerator, objective: str = "cycles") -> GroupedPlan:
    """The grouped GEMM's best plan on a token-aware preset for ``objective`` (cached per op and preset)."""
    return dataclasses.replace(_search(dataclasses.replace(op, name="_"), accel, objective), op=op)


@lru_cache(maxsize=2048)
def _search(op: Gemm, accel: Accelerator, objective: str) -> GroupedPlan:
    caps = capabilities(accel)
    nominal = Gemm("_", op.m, op.k, op.n, op.bits_a, op.bits_b, op.count, op.kind, op.bits_out)
    held = onchip(nominal, accel)
    reduction = "grouped_reduction" in caps
    grouped = [d for d, groups in zip(DIMS, (op.row_groups, op.depth_groups, op.col_groups), strict=True) if groups]
    templates = []
    for size in range(len(grouped)):  # which grouped dimensions run their groups together (not all: plain GEMM)
        for merged in itertools.combinations(grouped, size):
            splits = len(op.depth_groups) if op.depth_groups and "k" not in merged else 1
            templates.append(GroupedPlan(op, 1, 1, 1, "mkn", "buffer",
                                         _loops(op, "shared_operand" in caps, reduction, frozenset(merged)),
                                         widths(nominal, accel), held, "requant_on_load" in caps,
                                         "gather_on_chip" in caps, 0 if reduction or splits < 2 else splits - 1,
                                         frozenset(merged)))
    grid = np.meshgrid(*(candidates(dim, align) for dim, align in zip((op.m, op.k, op.n), accel.array.alignment(),
                                                                          strict=True)), indexing="ij")
    orders = accel.array.loop_orders()
    mt, kt, nt = (np.tile(axis.ravel(), len(orders)) for axis in grid)
    pm, pk, pn = (np.repeat([order.index(d) for order in orders], grid[0].size) for d in DIMS)
    resident = _resident(nominal, accel, held)
    legal, spills = _legal(nominal, accel, mt, kt, nt, pm, pk, pn, held, resident)
    if not legal.any():  # the ungrouped GEMM's mapper names the buffer that is too small
        from hwsim.mapper import map_gemm

        map_gemm(nominal, accel)
    mt, kt, nt, pm, pk, pn, spills = (x[legal] for x in (mt, kt, nt, pm, pk, pn, spills))
    compute = sum(gemm_metrics(part, accel, np.minimum(mt, part.m), np.minimum(kt, part.k), np.minimum(nt, part.n),
                               pm, pk, pn, spill=spills, resident=resident, onchip=held,
                               widths=widths(nominal, accel))["compute"] for part in op.parts())
    traffic = gemm_metrics(nominal, accel, mt, kt, nt, pm, pk, pn, spill=spills, resident=resident, onchip=held,
                           widths=widths(nominal, accel))
    dram = traffic["dram_read"] + traffic["dram_write"]
    key = np.maximum(op.count * compute, np.ceil(op.count * dram / accel.dram.bandwidth_bits_per_cycle))
    best = None
    for template, i in itertools.product(templates, np.lexsort((dram, key))[:EXACT]):
        order = "".join(sorted(DIMS, key=lambda d: {"m": pm[i], "k": pk[i], "n": pn[i]}[d]))
        plan = dataclasses.replace(template, mt=int(mt[i]), kt=int(kt[i]), nt=int(nt[i]), order=order,
                                   psum="dram" if spills[i] else "buffer")
        cost = estimate_grouped(plan, accel)
        rank = (_objective(cost, objective), cost.energy_pj if objective == "cycles" else cost.cycles, plan.label)
        if best is None or rank < best[0]:
            best = (rank, plan)
    return best[1]


def estimate_grouped(plan: GroupedPlan, accel: Accelerator) -> OpCost:
    """Exact closed-form cost of a grouped plan (the pipeline time of its steps)."""
    steps = plan.steps(accel)
    return grouped_cost(plan, accel, pipeline_cycles(steps, accel), plan.op.count * int(steps.compute.sum()))


def grouped_cost(plan: GroupedPlan, accel: Accelerator, cycles: int, compute_cycles: int) -> OpCost:
    """The grouped GEMM's row: traffic, SRAM accesses and energy summed over its tiles (all instances)."""
    op, count = plan.op, plan.op.count
    t = _tiles(plan, accel)
    reads = {b: int(t[f"sram_read_{b}"].sum()) for b in BUFFERS}
    writes = {b: int(t[f"sram_write_{b}"].sum()) for b in BUFFERS}
    dram_read, dram_write = int(t["load"].sum()), int(t["dram_write"].sum())
    vector_pj = _fetch_pj(plan, accel, t)
    merge = plan.merge_op()
    if merge is not None:
        merged = plan_vector(merge, accel).steps(accel)
        load, store = 2 * merge.elements * merge.bits, merge.elements * merge.bits
        reads["ifmap"], writes["ifmap"] = reads["ifmap"] + load, writes["ifmap"] + load
        reads["ofmap"], writes["ofmap"] = reads["ofmap"] + store, writes["ofmap"] + store
        dram_read, dram_write = dram_read + int(merged.load_bits.sum()), dram_write + int(merged.store_bits.sum())
        vector_pj += merge.elements * accel.vector.energy_pj_per_element[merge.kind]
    reads = {b: v * count for b, v in reads.items()}
    writes = {b: v * count for b, v in writes.items()}
    macs = t["m"] * t["k"] * t["n"]
    peak = np.array([accel.array.peak_macs_per_cycle(_sub_op(op.m, op.k, op.n, int(a), int(b), op.count, op.kind,
                                                             op.out_bits)) for a, b in zip(t["bits_a"], t["bits_b"],
                                                                                           strict=True)])
    capacity = float((peak * macs).sum() / macs.sum())
    return OpCost(
        name=op.name, kind=op.kind, count=count, bits_a=op.bits_a, bits_b=op.bits_b, tile=plan.label,
        cycles=cycles, compute_cycles=compute_cycles, stall_cycles=cycles - compute_cycles,
        utilization=op.macs / (cycles * capacity) if cycles else 0.0, macs=op.macs, bops=op.bops,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=dram_read * count, dram_write_bits=dram_write * count,
        energy_mac_pj=float(t["mac_pj"].sum()) * count, energy_sram_pj=sram_pj(accel, reads, writes),
        energy_dram_pj=(dram_read + dram_write) * count * accel.dram.energy_pj_per_bit,
        energy_vector_pj=vector_pj * count, energy_static_pj=_static_pj(accel, cycles),
        latency_s=cycles / accel.clock_hz,
    )


def _fetch_pj(plan: GroupedPlan, accel: Accelerator, t: dict[str, np.ndarray]) -> float:
    """Energy of the token hardware on one instance's fetches: index reads (gather) and load-path requantization."""
    caps, op = capabilities(accel), plan.op
    energy = 0.0
    for grouped, fetched, rows, elements, bits, nominal in (
            (plan.grouped("m"), t["fetch_a"], t["m"], t["m"] * t["k"], t["bits_a"], op.bits_a),
            (plan.grouped("k") or plan.grouped("n"), t["fetch_b"], t["k"] if op.depth_groups else t["n"],
             t["k"] * t["n"], t["bits_b"], op.bits_b)):
        if not grouped:
            continue
        if plan.gather:
            energy += float((fetched * rows).sum()) * caps["gather_on_chip"]["energy_pj_per_row"]
        if plan.requant:
            energy += float((fetched * elements * (bits != nominal)).sum()) \
                * caps["requant_on_load"]["energy_pj_per_element"]
    return energy


def _runs_plain(op: VectorOp, accel: Accelerator) -> bool:
    """Whether the preset runs this token vector op as the vector-unit pass of a plain preset."""
    caps = capabilities(accel)
    return not ((op.kind == "token_score" and "fused_score" in caps)
                or (op.kind == "regroup" and "requant_on_load" in caps) or _subword(op, accel) < 1)


def _subword(op: VectorOp, accel: Accelerator) -> float:
    return subword_factor(op) if "subword_vector" in capabilities(accel) else 1.0


def vector_steps(op: VectorOp, accel: Accelerator) -> Steps | None:
    """Steps of a token vector op on a token-aware preset (see :mod:`hwsim.tokens`); ``None`` when it moves
    nothing (gather on chip and requant on load: the GEMMs' fetches do the work)."""
    plain = plan_vector(op, accel).steps(accel)
    zeros = np.zeros_like(plain.compute)
    if _runs_plain(op, accel):
        return plain
    if _subword(op, accel) < 1:  # demoted rows at sub-word width: the same traffic, fewer lane-cycles
        chunks = blocks(op.elements, plan_vector(op, accel).chunk)
        compute = np.ceil(chunks * vector_rate(op, accel) * _subword(op, accel) / accel.vector.lanes)
        return Steps(plain.load_bits, compute.astype(np.int64), plain.store_bits)
    if op.kind == "token_score":  # fused: reads the class row in the softmax pass
        return Steps(zeros, plain.compute, zeros)
    if "gather_on_chip" in capabilities(accel):
        return None
    return Steps(plain.store_bits, zeros, plain.store_bits)  # a DMA gather round trip at the stored width


def vector_op_cost(op: VectorOp, accel: Accelerator, steps: Steps | None, cycles: int, compute_cycles: int) -> OpCost:
    """The row of a token vector op run as ``steps``: its DRAM traffic, the SRAM it touches, and vector
    energy for the elements the vector unit itself processed (a plain pass: as on a plain preset)."""
    if _runs_plain(op, accel):
        return vector_cost(plan_vector(op, accel), accel, cycles, compute_cycles)
    if _subword(op, accel) < 1:
        plain = vector_cost(plan_vector(op, accel), accel, cycles, compute_cycles)
        return dataclasses.replace(plain, tile=f"{plain.tile}, sub-word {_subword(op, accel):.3g}",
                                   energy_vector_pj=plain.energy_vector_pj * _subword(op, accel))
    load = int(steps.load_bits.sum()) if steps is not None else 0
    store = int(steps.store_bits.sum()) if steps is not None else 0
    on_chip = op.elements * op.bits if compute_cycles and not load else 0  # read from the output buffer
    reads = {"ifmap": load, "filter": 0, "ofmap": store + on_chip}
    writes = {"ifmap": load, "filter": 0, "ofmap": store}
    return OpCost(
        name=op.name, kind=op.kind, count=1, bits_a=op.bits, bits_b=op.bits,
        tile=f"{len(steps.compute)} chunk(s)" if steps is not None else "on chip (index gather, load-path requant)",
        cycles=cycles, compute_cycles=compute_cycles, stall_cycles=cycles - compute_cycles,
        utilization=compute_cycles / cycles if cycles else 0.0, macs=0, bops=0,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=load, dram_write_bits=store, energy_mac_pj=0.0, energy_sram_pj=sram_pj(accel, reads, writes),
        energy_dram_pj=(load + store) * accel.dram.energy_pj_per_bit,
        energy_vector_pj=op.elements * accel.vector.energy_pj_per_element[op.kind] if compute_cycles else 0.0,
        energy_static_pj=_static_pj(accel, cycles), latency_s=cycles / accel.clock_hz,
    )


def estimate_token_op(op: Gemm | VectorOp, accel: Accelerator, objective: str = "cycles") -> OpCost:
    """Closed-form cost of a grouped GEMM or token vector op on a token-aware preset."""
    if isinstance(op, Gemm):
        return estimate_grouped(plan_grouped(op, accel, objective), accel)
    steps = vector_steps(op, accel)
    cycles = pipeline_cycles(steps, accel) if steps is not None else 0
    return vector_op_cost(op, accel, steps, cycles, int(steps.compute.sum()) if steps is not None else 0)

