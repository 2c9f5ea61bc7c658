"""A reference simulator's mapping of one GEMM as an explicit loop nest, priced by hwsim's own model.

A reference mapping fixes what hwsim's mapper would otherwise choose: the tile loops and their
order, each tensor's tile footprint *as the reference sizes it* (input halos, padding, 32-bit
partial sums), and how far each tensor's block is reused on chip. :class:`LoopNestPlan` states
exactly that; hwsim then prices it with its own parts: the array's ``tile_cycles`` per tile, the
DRAM channel and the double-buffered pipeline (:func:`hwsim.tiling.pipeline_cycles` in closed form,
the simpy pipeline in ``simulate``), and the preset's energy constants.

Reuse rule (shared by BitFusion's simulator and SCALE-Sim's folds): a tensor's on-chip block spans
the ``reuse`` innermost loops; it is (re)loaded whenever those loops all restart, and its size is
one tile times the counts of the spanned loops that index the tensor. The output block is stored
when the spanned loops all finish; with ``out_loaded`` it is also loaded (at ``psum_bits``) when they
start, so a reduction split outside the output's block moves partial sums to DRAM and back.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from hwsim.accelerator import BUFFERS, Accelerator
from hwsim.result import OpCost
from hwsim.tiling import Transfer
from hwsim.workload import Gemm

PJ_PER_J = 1e12
TENSORS = ("a", "b", "out")
BUFFER_OF = {"a": "ifmap", "b": "filter", "out": "ofmap"}


@dataclass(frozen=True)
class Loop:
    name: str
    count: int


@dataclass(frozen=True)
class TensorTiles:
    """One tensor's tiles in the nest: footprint of one tile, loops that index it, reuse depth."""

    tile_bits: int
    indexed_by: frozenset[str]
    reuse: int  # how many innermost loops its on-chip block spans (0: reloaded every tile)


@dataclass(frozen=True)
class LoopNestPlan:
    """A reference mapping of one GEMM instance (``op.count`` instances run it back to back)."""

    op: Gemm
    reference: str
    loops: tuple[Loop, ...]  # outermost first
    tile: tuple[int, int, int]  # (m, k, n) the array computes per tile
    tensors: dict  # "a" / "b" / "out" -> TensorTiles
    out_loaded: bool  # the output block is loaded before it accumulates (partial sums in DRAM)
    label: str
    block_stages: bool = False  # double-buffer whole blocks: the next block loads during the current one

    @property
    def tiles(self) -> int:
        return math.prod(loop.count for loop in self.loops)

    def _block(self, tensor: str) -> tuple[range, int]:
        """(indexes of the loops its block spans, bits of one block)."""
        tiles = self.tensors[tensor]
        spanned = range(len(self.loops) - tiles.reuse, len(self.loops))
        factor = math.prod(self.loops[i].count for i in spanned if self.loops[i].name in tiles.indexed_by)
        return spanned, tiles.tile_bits * factor

    def steps(self) -> list[tuple[int, int, bool, bool]]:
        """Per tile in loop order: ``(loaded bits, stored bits, opens output block, closes output block)``.

        With ``block_stages`` each block after the first is fetched spread over the tiles of the block
        before it (double buffering at block granularity, as the reference's loop stack does);
        otherwise a block is fetched with the tile that first uses it.
        """
        blocks = {tensor: self._block(tensor) for tensor in TENSORS}
        last = [loop.count - 1 for loop in self.loops]
        indexes = list(itertools.product(*(range(loop.count) for loop in self.loops)))
        loads = [0] * len(indexes)
        fetched = ("a", "b", "out") if self.out_loaded else ("a", "b")
        opens = []
        for tensor in TENSORS:
            spanned, bits = blocks[tensor]
            starts = [s for s, index in enumerate(indexes) if all(index[i] == 0 for i in spanned)]
            if tensor == "out":
                opens = set(starts)
            if tensor not in fetched:
                continue
            for j, start in enumerate(starts):
                if not (self.block_stages and j):
                    loads[start] += bits
                    continue
                previous = range(starts[j - 1], start)
                share, extra = divmod(bits, len(previous))
                for n, step in enumerate(previous):
                    loads[step] += share + (n < extra)
        store = blocks["out"][1]
        closes = [all(index[i] == last[i] for i in blocks["out"][0]) for index in indexes]
        return [(loads[s], store if closes[s] else 0, s in opens, closes[s]) for s in range(len(indexes))]

    def dram_bits(self) -> dict[str, int]:
        """Bits per instance moved for each tensor (``out``: stores; ``psum``: partial-sum loads)."""
        moved = {}
        for tensor in TENSORS:
            spanned, bits = self._block(tensor)
            outside = math.prod(loop.count for i, loop in enumerate(self.loops) if i not in spanned)
            moved[tensor] = bits * outside
        moved["psum"] = moved["out"] if self.out_loaded else 0
        return moved


def transfers(plan: LoopNestPlan, accel: Accelerator) -> list[Transfer]:
    """The plan's tiles as hwsim pipeline steps (compute from the array model, first tile pays the
    instance overhead).

    With ``block_stages`` the reference double-buffers the blocks its memory operations fill
    (BitFusion's loop stack), so the next block loads while the whole current block computes, not
    just one tile of it (see :meth:`LoopNestPlan.steps`).
    """
    array = accel.array
    per_tile = array.tile_cycles(*plan.tile, plan.op)
    overhead = array.instance_overhead_cycles(plan.op)
    return [Transfer(load, per_tile + (overhead if i == 0 else 0), store, opens, closes)
            for i, (load, store, opens, closes) in enumerate(plan.steps())]


def cost(plan: LoopNestPlan, accel: Accelerator, cycles: int, compute_cycles: int) -> OpCost:
    """The OpCost row of a replayed plan: hwsim's energy constants on the plan's traffic.

    SRAM writes are the DRAM fills; SRAM reads are what the array consumes per tile (each tile's
    A and B once per tile, partial sums once per tile and the output once per store).
    """
    op, count = plan.op, plan.op.count
    moved = plan.dram_bits()
    tiles = plan.tiles
    m, k, n = plan.tile
    psum = accel.buffers.psum_bits
    writes = {"ifmap": moved["a"], "filter": moved["b"], "ofmap": moved["psum"] + tiles * m * n * psum}
    reads = {"ifmap": tiles * plan.tensors["a"].tile_bits, "filter": tiles * plan.tensors["b"].tile_bits,
             "ofmap": moved["out"] + tiles * m * n * psum}
    reads = {b: v * count for b, v in reads.items()}
    writes = {b: v * count for b, v in writes.items()}
    dram_read = (moved["a"] + moved["b"] + moved["psum"]) * count
    dram_write = moved["out"] * count
    energy = accel.sram_energy
    sram_pj = sum(reads[b] * energy.read_pj_per_bit[b] + writes[b] * energy.write_pj_per_bit[b] for b in BUFFERS)
    return OpCost(
        name=op.name,
        kind=op.kind,
        count=count,
        bits_a=op.bits_a,
        bits_b=op.bits_b,
        tile=f"{plan.reference}: {plan.label}",
        cycles=cycles,
        compute_cycles=compute_cycles,
        stall_cycles=cycles - compute_cycles,
        utilization=op.macs / (cycles * accel.array.peak_macs_per_cycle(op)),
        macs=op.macs,
        bops=op.bops,
        **{f"sram_read_bits_{b}": reads[b] for b in BUFFERS},
        **{f"sram_write_bits_{b}": writes[b] for b in BUFFERS},
        dram_read_bits=dram_read,
        dram_write_bits=dram_write,
        energy_mac_pj=op.macs * accel.array.mac_energy_pj(op),
        energy_sram_pj=sram_pj,
        energy_dram_pj=(dram_read + dram_write) * accel.dram.energy_pj_per_bit,
        energy_vector_pj=0.0,
        energy_static_pj=accel.static_power_w * cycles / accel.clock_hz * PJ_PER_J,
        latency_s=cycles / accel.clock_hz,
    )
