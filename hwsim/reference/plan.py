"""A reference simulator's mapping of one GEMM as an explicit loop nest, priced by hwsim's own model.

A reference mapping fixes what hwsim's mapper would otherwise choose: the tile loops and their
order, each tensor's tile footprint *as the reference sizes it* (input halos, padding, 32-bit
partial sums), and how far each tensor's block is reused on chip. :class:`LoopNestPlan` states
exactly that, and offers what hwsim's one cost model reads from any plan (``steps`` and ``metrics``,
as :class:`hwsim.GemmPlan` does): :func:`hwsim.cost_plan` / ``hwsim.estimate`` and ``hwsim.simulate``
price it with the array's ``tile_cycles``, the DRAM channel, the double-buffered pipeline and the
preset's energy constants, exactly as they price the search mapper's plans.

Reuse rule (BitFusion's simulator; SCALE-Sim's replay keeps the nest but counts traffic on its own
ports): a tensor's on-chip block spans the ``reuse`` innermost loops; it is (re)loaded whenever those loops all restart, and its size is
one tile times the counts of the spanned loops that index the tensor. The output block is stored
when the spanned loops all finish; with ``out_loaded`` it is also loaded (at ``psum_bits``) when they
start, so a reduction split outside the output's block moves partial sums to DRAM and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.accelerator import Accelerator
from hwsim.pipeline import Steps, pipeline_cycles
from hwsim.workload import Gemm

TENSORS = ("a", "b", "out")


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

    def tiles_in_order(self) -> tuple[np.ndarray, np.ndarray]:
        """Per tile in loop order: (loaded bits, stored bits).

        With ``block_stages`` each block after the first is fetched spread over the tiles of the block
        before it (double buffering at block granularity, as the reference's loop stack does);
        otherwise a block is fetched with the tile that first uses it.
        """
        counts = [loop.count for loop in self.loops]
        index = np.indices(counts).reshape(len(counts), -1) if counts else np.zeros((0, 1), dtype=np.int64)
        # index: (loops, tiles), outermost loop first
        tiles = index.shape[1]
        loads = np.zeros(tiles, dtype=np.int64)
        for tensor in ("a", "b", "out") if self.out_loaded else ("a", "b"):
            spanned, bits = self._block(tensor)
            starts = np.flatnonzero(np.all(index[list(spanned)] == 0, axis=0))
            if not self.block_stages:
                loads[starts] += bits
                continue
            loads[starts[0]] += bits
            block = np.searchsorted(starts, np.arange(tiles), side="right") - 1  # the block each tile is in
            length = np.diff(np.r_[starts, tiles])
            position = np.arange(tiles) - starts[block]
            prefetching = block < len(starts) - 1  # tiles during which the next block is fetched
            share, extra = divmod(bits, length[block])
            loads += np.where(prefetching, share + (position < extra), 0)
        spanned, store = self._block("out")
        last = np.array(counts)[list(spanned)][:, None] - 1
        closes = np.all(index[list(spanned)] == last, axis=0)
        return loads, np.where(closes, store, 0)

    def steps(self, accel: Accelerator) -> Steps:
        """The tiles of one instance as pipeline steps (compute from the array model; the first tile
        pays the instance overhead)."""
        load, store = self.tiles_in_order()
        array = accel.array
        compute = np.full(len(load), array.tile_cycles(*self.tile, self.op), dtype=np.int64)
        compute[0] += array.instance_overhead_cycles(self.op)
        return Steps(load, compute, store, self.op.count)

    def pipeline(self, accel: Accelerator) -> tuple[int, int]:
        """Cycles of the op through the pipeline (its own port stalls included) and compute cycles of one
        instance: what :func:`hwsim.cost_plan` reports, as for a :class:`hwsim.GemmPlan`."""
        steps = self.steps(accel)
        return pipeline_cycles(steps, accel), int(steps.compute.sum())

    def metrics(self, accel: Accelerator) -> dict[str, int]:
        """Per-instance traffic in the keys of :func:`hwsim.plan.gemm_metrics`. SRAM writes are the
        DRAM fills plus the array's partial-sum updates; SRAM reads are one A and one B tile per
        tile, one partial-sum read per tile and every block the output sends to DRAM."""
        moved = self.dram_bits()
        m, k, n = self.tile
        psum = accel.memory.psum_bits
        tiles = self.tiles
        compute = int(self.steps(accel).compute.sum())
        return {
            "compute": compute,
            "dram_read": moved["a"] + moved["b"] + moved["psum"],
            "dram_write": moved["out"],
            "first_load": self._block("a")[1] + self._block("b")[1],
            "last_store": self._block("out")[1],
            "sram_read_ifmap": tiles * self.tensors["a"].tile_bits,
            "sram_read_filter": tiles * self.tensors["b"].tile_bits,
            "sram_read_ofmap": moved["out"] + tiles * m * n * psum,
            "sram_write_ifmap": moved["a"],
            "sram_write_filter": moved["b"],
            "sram_write_ofmap": moved["psum"] + tiles * m * n * psum,
        }

    def dram_bits(self) -> dict[str, int]:
        """Bits per instance moved for each tensor (``out``: stores; ``psum``: partial-sum loads)."""
        moved = {}
        for tensor in TENSORS:
            spanned, bits = self._block(tensor)
            outside = math.prod(loop.count for i, loop in enumerate(self.loops) if i not in spanned)
            moved[tensor] = bits * outside
        moved["psum"] = moved["out"] if self.out_loaded else 0
        return moved
