"""BitFusion (Sharma et al., ISCA 2018): Fusion Units of 16 2-bit BitBricks.

A Fusion Unit fuses its BitBricks into ``pf = ⌊8/max(a,2)⌋·⌊8/max(w,2)⌋`` PEs (16 at 2×2,
4 at 4×4/8×2/2×8, 1 at 8×8) whose products are summed, so it advances ``pf`` elements of the
reduction per cycle. Bits round up to the supported 2/4/8 (3 → 4, 5..7 → 8); a 9–16-bit
operand is split into two 8-bit halves processed in two passes (16×16: four passes), as the
paper does. The array reads operands stored at 1/2/4/8/16 bits (``memory.storage_bits`` in the
preset picks which), so low precision also packs more elements per buffer and per DRAM beat.

Mapping (weight-stationary, like the paper's systolic organisation): array rows advance the
reduction (each unit ``pf`` elements), columns hold output channels, GEMM rows stream:

    cycles = ⌈K / (rows·pf)⌉ · ⌈N / cols⌉ · M · passes + fill_drain_cycles (once per instance)

so for K a multiple of rows·pf and N a multiple of cols, cycles − fill_drain = MACs / (units·pf).
The array's dynamic energy is ``array_pj_per_cycle`` per busy cycle of the whole array, i.e.
``array_pj_per_cycle / (units·pf)`` per MAC: fewer bits save energy as well as time.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerators.registry import register_pe_model
from hwsim.accelerator import PEArray, ceil_div
from hwsim.config import ARRAY_DIM, POSITIVE, Number
from hwsim.workload import Gemm

READABLE_BITS = (1, 2, 4, 8, 16)


def brick_bits(bits: int) -> int:
    """Width an operand runs and is stored at: 2, 4, 8, or 16 (two 8-bit passes)."""
    for width in (2, 4, 8):
        if bits <= width:
            return width
    return 16


def fusion_factor(bits: int) -> int:
    """Per-operand factor ⌊8/max(b,2)⌋ (4, 2 or 1); 16-bit operands use 1 with two passes."""
    return 8 // min(brick_bits(bits), 8)


def passes(bits: int) -> int:
    return 2 if bits > 8 else 1


@dataclass(frozen=True)
class BitFusionParams:
    rows: int
    cols: int
    fill_drain_cycles: int


@dataclass(frozen=True)
class BitFusionMacEnergy:
    array_pj_per_cycle: float


@register_pe_model("bitfusion")
class BitFusionArray(PEArray):
    Params = BitFusionParams
    MacEnergy = BitFusionMacEnergy
    ARRAY_SCHEMA = {
        "rows": ARRAY_DIM,
        "cols": ARRAY_DIM,
        "fill_drain_cycles": Number(integer=True, strict=False),
    }
    MAC_ENERGY_SCHEMA = {"array_pj_per_cycle": POSITIVE}

    params: BitFusionParams
    mac_energy: BitFusionMacEnergy

    @property
    def rows(self) -> int:
        return self.params.rows

    @property
    def cols(self) -> int:
        return self.params.cols

    @property
    def units(self) -> int:
        return self.rows * self.cols

    @property
    def dataflow(self) -> str:
        """Weights stay in the Fusion Units while GEMM rows stream (the paper's systolic organisation)."""
        return "ws"

    def pf(self, op: Gemm) -> int:
        return fusion_factor(op.bits_a) * fusion_factor(op.bits_b)

    def passes(self, op: Gemm) -> int:
        return passes(op.bits_a) * passes(op.bits_b)

    def precision_key(self, op: Gemm) -> tuple:
        """Operands run at their BitBrick width (3 -> 4, 5..7 -> 8), which sets pf and passes."""
        return brick_bits(op.bits_a), brick_bits(op.bits_b)

    def readable_storage_bits(self, operand: str) -> tuple[int, ...]:
        return READABLE_BITS

    def extents(self, op: Gemm):
        return None, self.rows * self.pf(op), self.cols

    def alignment(self) -> tuple[int, int, int]:
        return 1, self.rows, self.cols

    def tile_cycles(self, m, k, n, op: Gemm, stream_start: bool = True):
        return ceil_div(k, self.rows * self.pf(op)) * ceil_div(n, self.cols) * m * self.passes(op)

    def instance_overhead_cycles(self, op: Gemm) -> int:
        return self.params.fill_drain_cycles

    def peak_macs_per_cycle(self, op: Gemm) -> float:
        return self.units * self.pf(op) / self.passes(op)

    def area_units(self) -> int:
        """Fusion Units (16 BitBricks, shift-add tree and accumulator each)."""
        return self.units

    def mac_energy_pj(self, op: Gemm) -> float:
        return self.mac_energy.array_pj_per_cycle / self.peak_macs_per_cycle(op)

