"""SCALE-Sim 3.0.0's fold mapping of a GEMM on a systolic preset, as a plan hwsim prices.

SCALE-Sim runs a layer as folds of the array, column folds outermost, row folds inside
(``systolic_compute_{ws,os,is}.py``), each fold streaming the temporal dimension whole:

* ws: for each ``C``-block of N, for each ``R``-block of K: A block ``M×R``, B block ``R×C``;
* os: for each ``C``-block of N, for each ``R``-block of M: A block ``R×K``, B block ``K×C``;
* is: for each ``C``-block of M, for each ``R``-block of K: A block ``C×R``, B block ``R×N``.

With ``InterfaceBandwidth: USER`` its traffic follows these folds (fold granularity, 1-byte words):
an operand whose whole matrix fits the active half of its SRAM (``active_buf_frac = 0.5``) is
fetched once; otherwise each fold fetches its block again. Every fold writes its output block, so
ws and is write ``ceil(K/R)`` partial-sum blocks per output and never read them back; os keeps
the sum in the PEs and writes each output once. A convolution is its valid-padding im2col GEMM.
"""

from __future__ import annotations

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.reference.plan import Loop, LoopNestPlan, TensorTiles
from hwsim.workload import Gemm

ACTIVE_FRACTION = 0.5  # single_layer_sim.py: active_buf_frac for the read buffers
WORD_BITS = 8


def replay(op: Gemm, accel: Accelerator) -> LoopNestPlan:
    """SCALE-Sim's folds of ``op`` on a ``systolic`` preset (rows = ArrayHeight, cols = ArrayWidth)."""
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
    active = {buffer: accel.buffers.bits(buffer) * ACTIVE_FRACTION for buffer in ("ifmap", "filter")}
    depth = len(loops)
    tensors = {
        "a": TensorTiles(tm * tk * bits_a, frozenset("mk"), depth if m * k * bits_a <= active["ifmap"] else 0),
        "b": TensorTiles(tk * tn * bits_b, frozenset("kn"), depth if k * n * bits_b <= active["filter"] else 0),
        "out": TensorTiles(tm * tn * WORD_BITS, frozenset("mn"), 0),
    }
    label = f"scalesim: {dataflow} folds " + " x ".join(f"{loop.name}{loop.count}" for loop in loops)
    return LoopNestPlan(op, "scalesim", loops, tile, tensors, out_loaded=False, label=label)
