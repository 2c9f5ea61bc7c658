"""SCALE-Sim 3.0.0's fold mapping of a GEMM on a systolic preset, with its own port model, as a plan hwsim prices.

SCALE-Sim runs a layer as folds of the array, column folds outermost, row folds inside
(``systolic_compute_{ws,os,is}.py``), each fold streaming the temporal dimension whole:

* ws: for each ``C``-block of N, for each ``R``-block of K: A block ``M×R`` streams (skewed), B block
  ``R×C`` is loaded row by row, last row first;
* is: the same with the operands' roles swapped: B (``N×R`` per fold) streams, A (``R×C`` of ``Aᵀ``,
  C-blocks of M) is loaded last row first;
* os: for each ``C``-block of N, for each ``R``-block of M: A block (``K×R`` of ``Aᵀ``) and B block
  (``K×C``) both stream (skewed); each output is written once, at the fold's end.

Every demand line of those folds is one cycle. Its traffic and stalls follow SCALE-Sim's memory
conventions (:mod:`hwsim.reference.scalesim_ports`): each read operand is fetched through a circular
prefetch window over its *prefetch order* (anti-diagonals of the stacked fold blocks for streamed
operands, rows of the stacked fold blocks for loaded ones), so a demand that steps back re-fetches the
operand, and the ports' waits add to the compute cycles. A convolution is its valid-padding im2col
GEMM whose A entries are input-pixel addresses (repeated across windows, as SCALE-Sim's are).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.errors import HwsimError
from hwsim.pipeline import Steps
from hwsim.reference.plan import Loop, LoopNestPlan, TensorTiles
from hwsim.reference.scalesim_ports import PortResult, ReadStream, runs, set_words, simulate_ports
from hwsim.workload import Conv2d, Gemm

WORD_BITS = 8


@dataclass(frozen=True)
class ScaleSimPlan(LoopNestPlan):
    """SCALE-Sim's folds of one GEMM, with the traffic and stalls of its three DRAM ports."""

    ports: PortResult | None = None
    word_bits: tuple[int, int] = (WORD_BITS, WORD_BITS)  # storage bits of an A / B word

    def dram_bits(self) -> dict[str, int]:
        words = self.ports.dram_words
        return {"a": words["ifmap"] * self.word_bits[0], "b": words["filter"] * self.word_bits[1],
                "out": words["ofmap"] * WORD_BITS, "psum": 0}

    def steps(self, accel: Accelerator) -> Steps:
        """The folds' compute; DRAM moves over SCALE-Sim's own ports, whose waits are the stall."""
        base = super().steps(accel)
        zero = np.zeros_like(base.load_bits)
        stall = np.zeros_like(base.compute)
        stall[0] = self.ports.stall_cycles
        return Steps(zero, base.compute, zero, base.repeat, stall)


def _antidiagonal(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of a ``rows × cols`` matrix in SCALE-Sim's prefetch flattening: anti-diagonals, bottom row first."""
    r, c = np.indices((rows, cols)).reshape(2, -1)
    order = np.lexsort((-r, r + c))
    return r[order], c[order]


def _streamed(ids: np.ndarray, tile: int, other_folds: int, fold_lines: int, lead: int, size: int,
              inner: bool = True) -> ReadStream:
    """An operand that streams skewed: ``ids`` is ``T × D``, folded in ``tile``-column blocks; with
    ``inner`` the sweep over them repeats ``other_folds`` times, otherwise each block runs ``other_folds``
    folds in a row. Line ``l`` of a fold reads column ``j`` at row ``l - j - lead``."""
    t, d = ids.shape
    folds = ceil_div(d, tile)
    sr, sc = _antidiagonal(folds * t, tile)
    col = (sr // t) * tile + sc
    keep = col < d
    fetch = (sr[keep] % t, col[keep])
    held_by = _catalogue(ids, fetch, size)
    line, j = np.indices((fold_lines, tile)).reshape(2, -1)
    row = line - j - lead
    lines, helds = [], []
    for f in range(folds):  # each block's demand once, cut to runs, then laid out in fold order
        ok = (row >= 0) & (row < t) & (f * tile + j < d)
        block_lines, block_held = runs(line[ok], held_by[ids[row[ok], f * tile + j[ok]]])
        lines.append(block_lines)
        helds.append(block_held)
    # fold order: block f's o-th repeat is fold o * folds + f (inner) or f * other_folds + o
    index = [(o * folds + f if inner else f * other_folds + o, f) for f in range(folds) for o in range(other_folds)]
    index.sort()
    all_lines = np.concatenate([lines[f] + position * fold_lines for position, f in index])
    all_held = np.concatenate([helds[f] for _, f in index])
    return ReadStream(folds * t * tile, len(fetch[0]), all_lines, all_held)


def _loaded(ids: np.ndarray, rows: int, cols: int, fold_lines: int, size: int) -> ReadStream:
    """An operand loaded into the array: ``ids`` is ``K × S``, column blocks of ``cols`` outer, row
    blocks of ``rows`` inner; a fold reads its block's rows last first, one per line."""
    k, s = ids.shape
    col_folds, row_folds = ceil_div(s, cols), ceil_div(k, rows)
    fr, fc = np.indices((col_folds * k, cols)).reshape(2, -1)
    col = (fr // k) * cols + fc
    keep = col < s
    fetch = (fr[keep] % k, col[keep])
    held_by = _catalogue(ids, fetch, size)
    fold, step = np.divmod(np.arange(col_folds * row_folds * rows), rows)  # one block row per line
    c, r = np.divmod(fold, row_folds)
    kk = r * rows + rows - 1 - step
    use = kk < k
    fold, step, c, kk = fold[use], step[use], c[use], kk[use]
    width = np.minimum(cols, s - c * cols)
    lines = np.repeat(fold * fold_lines + step, width)
    offset = np.arange(len(lines)) - np.repeat(np.cumsum(width) - width, width)  # column within the block
    flat_col = np.repeat(c * cols, width) + offset
    lines, held = runs(lines, held_by[ids[np.repeat(kk, width), flat_col]])
    return ReadStream(col_folds * k * cols, len(fetch[0]), lines, held)


def _catalogue(ids: np.ndarray, fetch: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    """Per id: the sets (of ``size`` words of the fetch order) holding a copy of it, -1 filled; an
    im2col address has several copies, any of which serves it."""
    order = ids[fetch[0], fetch[1]]
    by_word = np.argsort(order, kind="stable")
    words, starts, counts = np.unique(order[by_word], return_index=True, return_counts=True)
    held = np.full((int(order.max()) + 1, int(counts.max())), -1, dtype=np.int64)
    group = np.repeat(np.arange(len(words)), counts)
    held[words[group], np.arange(len(order)) - starts[group]] = by_word // size
    return held


def _writes(t: int, width: int, cols: int, col_folds: int, row_folds: int, fold_lines: int, lead: int) -> np.ndarray:
    """Outputs written per line: a skewed ``t × cols`` block per fold, column block ``c`` of ``width`` valid."""
    line, j = np.arange(fold_lines)[:, None], np.arange(cols)[None, :]
    row = line - j - lead
    per_line = []
    for c in range(col_folds):
        valid = min(cols, width - c * cols)
        per_line.append(np.tile(((row >= 0) & (row < t) & (j < valid)).sum(1), row_folds))
    return np.concatenate(per_line)


def _writes_once(m: int, n: int, k: int, rows: int, cols: int, fold_lines: int) -> np.ndarray:
    """os: outputs written per line; a fold's ``rows × cols`` block leaves skewed, last row first,
    after its ``k - 1``-line reduction."""
    line, j = np.arange(fold_lines)[:, None], np.arange(cols)[None, :]
    flipped = line - j - (k - 1)
    per_line = []
    for c in range(ceil_div(n, cols)):
        width = min(cols, n - c * cols)
        for r in range(ceil_div(m, rows)):
            height = min(rows, m - r * rows)
            row = rows - 1 - flipped
            per_line.append(((flipped >= 0) & (flipped < rows) & (row < height) & (j < width)).sum(1))
    return np.concatenate(per_line)


def _operands(m: int, k: int, n: int, conv: Conv2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Word ids of A (``m × k``) and B (``k × n``); a convolution's A holds input-pixel addresses."""
    b = np.arange(k * n, dtype=np.int64).reshape(k, n)
    if conv is None:
        return np.arange(m * k, dtype=np.int64).reshape(m, k), b
    width = (conv.out_w - 1) * conv.stride + conv.kernel_w  # input columns the windows reach
    height = (conv.out_h - 1) * conv.stride + conv.kernel_h
    pixel, tap = np.indices((m, k))
    image, out = np.divmod(pixel, conv.out_h * conv.out_w)
    out_y, out_x = np.divmod(out, conv.out_w)
    ky, rest = np.divmod(tap, conv.kernel_w * conv.in_channels)
    kx, channel = np.divmod(rest, conv.in_channels)
    y, x = out_y * conv.stride + ky, out_x * conv.stride + kx
    return ((image * height + y) * width + x) * conv.in_channels + channel, b


def port_model(op: Gemm, rows: int, cols: int, dataflow: str, buffers: dict[str, int], read_bw: int,
               write_bw: int) -> PortResult:
    """SCALE-Sim's DRAM words and stall cycles for one instance of ``op`` (sizes in 1-byte words)."""
    sizes = (buffers["ifmap"], buffers["filter"], buffers["ofmap"])
    return _port_model(op.m, op.k, op.n, op.conv, rows, cols, dataflow, sizes, read_bw, write_bw)


@functools.lru_cache(maxsize=256)
def _port_model(m: int, k: int, n: int, conv: Conv2d | None, rows: int, cols: int, dataflow: str,
                sizes: tuple[int, int, int], read_bw: int, write_bw: int) -> PortResult:
    """:func:`port_model`, cached by shape (a ViT repeats each block's GEMMs)."""
    a, b = _operands(m, k, n, conv)
    size_a, size_b = set_words(sizes[0]), set_words(sizes[1])
    if dataflow in ("ws", "is"):  # stream T x K rows through stationary K x S columns
        streamed, stationary, t, s = (a, b, m, n) if dataflow == "ws" else (b.T, a.T, n, m)
        fold_lines = 2 * rows + t + cols - 2
        col_folds = ceil_div(s, cols)
        streamed_size, stationary_size = (size_a, size_b) if dataflow == "ws" else (size_b, size_a)
        first = _streamed(np.ascontiguousarray(streamed), rows, col_folds, fold_lines, rows, streamed_size)
        second = _loaded(np.ascontiguousarray(stationary), rows, cols, fold_lines, stationary_size)
        reads = {"ifmap": first, "filter": second} if dataflow == "ws" else {"ifmap": second, "filter": first}
        writes = _writes(t, s, cols, col_folds, ceil_div(k, rows), fold_lines, 2 * rows - 1)
    else:  # os: A^T (K x M) and B (K x N) stream; outputs leave once per fold
        fold_lines = k + rows + cols - 2
        row_folds, col_folds = ceil_div(m, rows), ceil_div(n, cols)
        reads = {"ifmap": _streamed(np.ascontiguousarray(a.T), rows, col_folds, fold_lines, 0, size_a),
                 "filter": _streamed(b, cols, row_folds, fold_lines, 0, size_b, inner=False)}
        writes = _writes_once(m, n, k, rows, cols, fold_lines)
    return simulate_ports(reads, writes, dict(zip(("ifmap", "filter", "ofmap"), sizes, strict=True)),
                          read_bw, write_bw)


def replay(op: Gemm, accel: Accelerator) -> ScaleSimPlan:
    """SCALE-Sim's folds of ``op`` on a ``systolic`` preset (rows = ArrayHeight, cols = ArrayWidth),
    its ifmap / filter read ports at ``dram.read_bandwidth_bits_per_cycle`` (default: the channel's
    rate) and its ofmap write port at ``dram.bandwidth_bits_per_cycle``. An operand stored as two words
    (9..16 bits) moves at that width; its stalls are those of one pass (SCALE-Sim has no such operands)."""
    array = accel.config["array"]
    r, c, dataflow = array["rows"], array["cols"], array["dataflow"]
    m, k, n = op.m, op.k, op.n
    bits_a = accel.memory.storage_bits(op.bits_a, "a")
    bits_b = accel.memory.storage_bits(op.bits_b, "b")
    if dataflow == "ws":
        loops, tile = (Loop("n", ceil_div(n, c)), Loop("k", ceil_div(k, r))), (m, r, c)
    elif dataflow == "os":
        loops, tile = (Loop("n", ceil_div(n, c)), Loop("m", ceil_div(m, r))), (r, k, c)
    else:
        loops, tile = (Loop("m", ceil_div(m, c)), Loop("k", ceil_div(k, r))), (c, r, n)
    tm, tk, tn = (min(size, dim) for size, dim in zip(tile, (m, k, n), strict=True))
    tensors = {"a": TensorTiles(tm * tk * bits_a, frozenset("mk"), 0),
               "b": TensorTiles(tk * tn * bits_b, frozenset("kn"), 0),
               "out": TensorTiles(tm * tn * WORD_BITS, frozenset("mn"), 0)}
    dram = accel.dram
    write_bw = int(dram.bandwidth_bits_per_cycle // WORD_BITS)
    read_bw = int((dram.read_bandwidth_bits_per_cycle or dram.bandwidth_bits_per_cycle) // WORD_BITS)
    if min(read_bw, write_bw) < 1:
        raise HwsimError(f"accelerator '{accel.name}': SCALE-Sim's ports move whole {WORD_BITS}-bit words; set "
                         f"dram.bandwidth_bits_per_cycle and dram.read_bandwidth_bits_per_cycle >= {WORD_BITS}")
    buffers = {name: accel.buffers.bits(name) // WORD_BITS for name in ("ifmap", "filter", "ofmap")}
    ports = port_model(op, r, c, dataflow, buffers, read_bw, write_bw)
    label = f"scalesim: {dataflow} folds " + " x ".join(f"{loop.name}{loop.count}" for loop in loops)
    return ScaleSimPlan(op, "scalesim", loops, tile, tensors, out_loaded=False, label=label, ports=ports,
                        word_bits=(bits_a, bits_b))
