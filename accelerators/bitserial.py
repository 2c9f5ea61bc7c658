"""Bit-serial accelerators: Stripes (activations serial) and Loom (activations and weights serial).

Both follow DaDianNao's organisation: ``tiles`` × ``filters`` (per tile) output channels,
``windows`` output positions and ``lanes`` reduction elements per step. For transformers a
GEMM row (token) plays the role of a window, a column (output feature) that of a filter.
Pa, Pw are the activation and weight (or second-operand) bits, 1..16.

Stripes (Judd et al., MICRO 2016): serial inner products over Pa cycles with 16-bit parallel
weights. Conv-style layers fill the windows; a GEMM with fewer rows than windows (a fully
connected layer on one token) falls back to processing one row per cycle with the activation
bits spread over the SIPs, i.e. bit-parallel speed, so FC layers gain nothing (as published):

    cycles = ⌈N/(tiles·filters)⌉ · ⌈K/lanes⌉ · min(⌈M/windows⌉ · Pa, M)

Loom (Sharify et al., DAC 2018): weights are serial too; conv time ∝ Pa·Pw, FC time ∝ Pw:

    cycles = ⌈N/(tiles·filters)⌉ · ⌈K/lanes⌉ · min(⌈M/windows⌉ · Pa · Pw, M · Pw)

plus ``fill_drain_cycles`` once per GEMM instance. Storage: Stripes reads weights only at their
16-bit parallel width and activations packed at any 1..16 bits (serial layout); Loom reads both packed.
MAC energy scales with the serial work: Stripes ``pj_per_mac_per_activation_bit · Pa``,
Loom ``pj_per_bit_product · Pa · Pw``.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerators.registry import register_pe_model
from hwsim.accelerator import PEArray, ceil_div
from hwsim.config import ARRAY_DIM, POSITIVE, Number
from hwsim.workload import MAX_BITS, Gemm

PARALLEL_BITS = 16
SERIAL_BITS = tuple(range(1, MAX_BITS + 1))

_ARRAY_SCHEMA = {
    "tiles": ARRAY_DIM,
    "filters": ARRAY_DIM,
    "windows": ARRAY_DIM,
    "lanes": ARRAY_DIM,
    "fill_drain_cycles": Number(integer=True, strict=False),
}


@dataclass(frozen=True)
class BitSerialParams:
    tiles: int
    filters: int
    windows: int
    lanes: int
    fill_drain_cycles: int


@dataclass(frozen=True)
class StripesMacEnergy:
    pj_per_mac_per_activation_bit: float


@dataclass(frozen=True)
class LoomMacEnergy:
    pj_per_bit_product: float


class _BitSerialArray(PEArray):
    ARRAY_SCHEMA = _ARRAY_SCHEMA
    Params = BitSerialParams
    params: BitSerialParams

    def serial_bits(self, op: Gemm) -> tuple[int, int]:
        """(bits per window step, bits per single-row step)."""
        raise NotImplementedError

    @property
    def columns(self) -> int:
        return self.params.tiles * self.params.filters

    def extents(self, op: Gemm):
        return self.params.windows, self.params.lanes, self.columns

    def alignment(self) -> tuple[int, int, int]:
        return self.params.windows, self.params.lanes, self.columns

    def row_cycles(self, m, op: Gemm):
        """Cycles for ``m`` rows of one (filters × lanes) step, in the mode chosen for the whole GEMM
        (window mode unless one row at a time is faster, i.e. the op has too few rows)."""
        window_step, row_step = self.serial_bits(op)
        windows = self.params.windows
        if ceil_div(op.m, windows) * window_step <= op.m * row_step:
            return ceil_div(m, windows) * window_step
        return m * row_step

    def tile_cycles(self, m, k, n, op: Gemm, stream_start: bool = True):
        return ceil_div(n, self.columns) * ceil_div(k, self.params.lanes) * self.row_cycles(m, op)

    def instance_overhead_cycles(self, op: Gemm) -> int:
        return self.params.fill_drain_cycles

    def area_units(self) -> int:
        """Serial lanes: ``lanes`` per inner-product unit, one unit per (tile, filter, window)."""
        p = self.params
        return p.tiles * p.filters * p.windows * p.lanes

    def peak_macs_per_cycle(self, op: Gemm) -> float:
        window_step, row_step = self.serial_bits(op)
        per_step = self.columns * self.params.lanes
        return per_step * max(self.params.windows / window_step, 1 / row_step)


@register_pe_model("stripes")
class StripesArray(_BitSerialArray):
    MAC_ENERGY_SCHEMA = {"pj_per_mac_per_activation_bit": POSITIVE}
    MacEnergy = StripesMacEnergy
    mac_energy: StripesMacEnergy

    def serial_bits(self, op: Gemm) -> tuple[int, int]:
        return op.bits_a, 1

    def precision_key(self, op: Gemm) -> tuple:
        """Weights run bit-parallel at 16 bits: only the activation bits set time and MAC energy."""
        return (op.bits_a,)

    def readable_storage_bits(self, operand: str) -> tuple[int, ...]:
        return SERIAL_BITS if operand == "a" else (PARALLEL_BITS,)

    def mac_energy_pj(self, op: Gemm) -> float:
        return self.mac_energy.pj_per_mac_per_activation_bit * op.bits_a


@register_pe_model("loom")
class LoomArray(_BitSerialArray):
    MAC_ENERGY_SCHEMA = {"pj_per_bit_product": POSITIVE}
    MacEnergy = LoomMacEnergy
    mac_energy: LoomMacEnergy

    def serial_bits(self, op: Gemm) -> tuple[int, int]:
        return op.bits_a * op.bits_b, op.bits_b

    def readable_storage_bits(self, operand: str) -> tuple[int, ...]:
        return SERIAL_BITS

    def mac_energy_pj(self, op: Gemm) -> float:
        return self.mac_energy.pj_per_bit_product * op.bits_a * op.bits_b
