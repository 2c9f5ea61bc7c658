"""The mapper's candidates: tile sizes aligned to the array × the loop orders it allows.

The grid does not depend on bits, buffers, bandwidth or clock, so it is built once per shape,
alignment and set of orders (cached) and shared by every bit variant of a shape and every design
of a sweep that keeps the array; :mod:`hwsim.bounds` and :mod:`hwsim.mapper` both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.pipeline import DIMS
from hwsim.plan import refetches
from hwsim.workload import Gemm

GROWTH = 1.5  # candidate tile sizes: splits into 1..4 parts, then ~1.5x more parts each step


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


@dataclass(frozen=True)
class Grid:
    """The candidates of a shape: tiles and loop positions (``mt … pn``), and for each the index
    (``tile``) of its tile sizes among the distinct ones (``tiles``: what depends on tiles alone, like
    the array's compute cycles, is computed once per tile, not once per loop order); ``fetches``: how
    often each fetches all of A and of B unless resident (:func:`hwsim.plan.refetches`)."""

    mt: np.ndarray
    kt: np.ndarray
    nt: np.ndarray
    pm: np.ndarray
    pk: np.ndarray
    pn: np.ndarray
    tile: np.ndarray
    tiles: tuple[np.ndarray, np.ndarray, np.ndarray]
    fetches: tuple[np.ndarray, np.ndarray]

    def take(self, candidates: np.ndarray) -> Grid:
        """The grid of these candidates only (same distinct tiles)."""
        rows = (self.mt, self.kt, self.nt, self.pm, self.pk, self.pn, self.tile)
        return Grid(*(x[candidates] for x in rows), self.tiles, tuple(x[candidates] for x in self.fetches))


def grid_of(op: Gemm, accel: Accelerator) -> Grid:
    """The candidate (mt, kt, nt, pm, pk, pn) of an op's shape: tile grid × loop orders, one per group of
    orders that run the same steps (shared by every accelerator with the same alignment and orders,
    e.g. the designs of a sweep that vary buffers, bandwidth or clock)."""
    return _grid_of(op.m, op.k, op.n, accel.array.alignment(), accel.array.loop_orders())


@lru_cache(maxsize=1024)
def _grid_of(m: int, k: int, n: int, alignment: tuple[int, int, int], orders: tuple[str, ...]) -> Grid:
    sizes = (candidates(dim, align) for dim, align in zip((m, k, n), alignment, strict=True))
    tiles = tuple(axis.ravel() for axis in np.meshgrid(*sizes, indexing="ij"))
    several = [ceil_div(dim, t) > 1 for dim, t in zip((m, k, n), tiles, strict=True)]
    # per order (outer) and tile, whether it is the first order running its steps: candidates in that order
    order, tile = np.nonzero(_first_orders(orders)[several[0] * 4 + several[1] * 2 + several[2]].T)
    mt, kt, nt = (t[tile] for t in tiles)
    pm, pk, pn = (np.array([o.index(d) for o in orders])[order] for d in DIMS)
    fetches = refetches(ceil_div(m, mt), ceil_div(k, kt), ceil_div(n, nt), pm, pk, pn)
    return Grid(mt, kt, nt, pm, pk, pn, tile, tiles, fetches)


@lru_cache(maxsize=64)
def _first_orders(orders: tuple[str, ...]) -> np.ndarray:
    """(8, orders): per pattern of which of m, k, n have several blocks (bits 4, 2, 1), whether each
    order is the first of those nesting those loops alike: orders that differ only in loops of one
    block run the very same steps, so the grid keeps one of them."""
    table = np.zeros((8, len(orders)), dtype=bool)
    for pattern in range(8):
        seen: set[str] = set()
        for i, order in enumerate(orders):
            nesting = "".join(d for d in order if pattern & (4 >> DIMS.index(d)))
            table[pattern, i] = nesting not in seen
            seen.add(nesting)
    return table
