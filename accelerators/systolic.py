"""INT8 systolic array with SCALE-Sim 3.0.0 semantics (the 8-bit baseline).

Array of ``rows × cols`` 8-bit MAC PEs, dataflow ``ws`` / ``os`` / ``is``. Following
SCALE-Sim's GEMM mode (an M×K input times N filters of K), with R = rows, C = cols and T the
temporal (streamed) dimension, every fold costs its own fill and drain:

* ws: folds = ⌈K/R⌉·⌈N/C⌉, cycles per fold = 2R + C + M − 2  (T = M; R cycles to load weights)
* os: folds = ⌈M/R⌉·⌈N/C⌉, cycles per fold = R + C + K − 2   (T = K)
* is: folds = ⌈K/R⌉·⌈M/C⌉, cycles per fold = 2R + C + N − 2  (T = N; R cycles to load inputs)

These are the row counts of SCALE-Sim's demand matrices, i.e. its compute cycles without
memory stalls (SCALE-Sim reports the last cycle's 0-based index, one less). When buffers force
the streamed dimension to be split across tiles, the later pieces resume their folds without
a new fill/drain (the fold's fill/drain is charged to its first piece), so compute cycles equal
SCALE-Sim's whatever the buffer sizes; capacity shows up as DRAM traffic and stalls instead. Precision: operands of ≤ 8 bits run and are stored as 8-bit words (no gain
from fewer bits); 9–16-bit operands are split into two 8-bit halves, two passes each
(so 16×16 takes 4 passes) and are stored at 16 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerators.registry import register_pe_model
from hwsim.accelerator import PEArray, ceil_div
from hwsim.config import ARRAY_DIM, POSITIVE, Choice
from hwsim.workload import Gemm

READABLE_BITS = (8, 16)  # 8-bit words; a 16-bit operand is two of them


def _passes(bits: int) -> int:
    return 1 if bits <= 8 else 2


@dataclass(frozen=True)
class SystolicParams:
    rows: int
    cols: int
    dataflow: str


@dataclass(frozen=True)
class SystolicMacEnergy:
    pj_per_mac: float


@register_pe_model("systolic")
class SystolicArray(PEArray):
    Params = SystolicParams
    MacEnergy = SystolicMacEnergy
    ARRAY_SCHEMA = {"rows": ARRAY_DIM, "cols": ARRAY_DIM, "dataflow": Choice(("ws", "os", "is"))}
    MAC_ENERGY_SCHEMA = {"pj_per_mac": POSITIVE}

    params: SystolicParams
    mac_energy: SystolicMacEnergy

    @property
    def rows(self) -> int:
        return self.params.rows

    @property
    def cols(self) -> int:
        return self.params.cols

    @property
    def dataflow(self) -> str:
        return self.params.dataflow

    def readable_storage_bits(self, operand: str) -> tuple[int, ...]:
        return READABLE_BITS

    def precision_key(self, op: Gemm) -> tuple:
        """Up to 8 bits run in one pass, 9..16 in two: nothing else of the bits matters to the array."""
        return _passes(op.bits_a), _passes(op.bits_b)

    def passes(self, op: Gemm) -> int:
        return _passes(op.bits_a) * _passes(op.bits_b)

    def extents(self, op: Gemm):
        r, c = self.rows, self.cols
        return {"ws": (None, r, c), "os": (r, None, c), "is": (c, r, None)}[self.dataflow]

    def alignment(self) -> tuple[int, int, int]:
        r, c = self.rows, self.cols
        return {"ws": (1, r, c), "os": (r, 1, c), "is": (c, r, 1)}[self.dataflow]

    def tile_cycles(self, m, k, n, op: Gemm, stream_start: bool = True):
        r, c = self.rows, self.cols
        if self.dataflow == "ws":
            folds, fill, stream = ceil_div(k, r) * ceil_div(n, c), 2 * r + c - 2, m
        elif self.dataflow == "os":
            folds, fill, stream = ceil_div(m, r) * ceil_div(n, c), r + c - 2, k
        else:
            folds, fill, stream = ceil_div(k, r) * ceil_div(m, c), 2 * r + c - 2, n
        return folds * (fill * stream_start + stream) * self.passes(op)

    def peak_macs_per_cycle(self, op: Gemm) -> float:
        return self.rows * self.cols / self.passes(op)

    def area_units(self) -> int:
        """One 8-bit MAC PE per array cell."""
        return self.rows * self.cols

    def mac_energy_pj(self, op: Gemm) -> float:
        return self.mac_energy.pj_per_mac * self.passes(op)
