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

plus ``fill_drain_cycles`` once per GEMM instance. Storage: Stripes keeps weights at their
16-bit parallel width and activations packed at Pa bits (serial layout); Loom packs both.
MAC energy scales with the serial work: Stripes ``pj_per_mac_per_activation_bit · Pa``,
Loom ``pj_per_bit_product · Pa · Pw``.
"""

from __future__ import annotations

from hwsim.accelerator import PEArray, ceil_div
from hwsim.config import ARRAY_DIM, POSITIVE, Number
from hwsim.workload import Gemm

PARALLEL_BITS = 16

_ARRAY_SCHEMA = {
    "tiles": ARRAY_DIM,
    "filters": ARRAY_DIM,
    "windows": ARRAY_DIM,
    "lanes": ARRAY_DIM,
    "fill_drain_cycles": Number(integer=True, strict=False),
}


class _BitSerialArray(PEArray):
    ARRAY_SCHEMA = _ARRAY_SCHEMA

    def serial_bits(self, op: Gemm) -> tuple[int, int]:
        """(bits per window step, bits per single-row step)."""
        raise NotImplementedError

    @property
    def columns(self) -> int:
        return self.array["tiles"] * self.array["filters"]

    def extents(self, op: Gemm):
        return self.array["windows"], self.array["lanes"], self.columns

    def row_cycles(self, m: int, op: Gemm) -> int:
        """Cycles for ``m`` rows of one (filters × lanes) step, in the mode chosen for the whole GEMM
        (window mode unless one row at a time is faster, i.e. the op has too few rows)."""
        window_step, row_step = self.serial_bits(op)
        if ceil_div(op.m, self.array["windows"]) * window_step <= op.m * row_step:
            return ceil_div(m, self.array["windows"]) * window_step
        return m * row_step

    def tile_cycles(self, m: int, k: int, n: int, op: Gemm, stream_start: bool = True) -> int:
        return ceil_div(n, self.columns) * ceil_div(k, self.array["lanes"]) * self.row_cycles(m, op)

    def instance_overhead_cycles(self, op: Gemm) -> int:
        return self.array["fill_drain_cycles"]

    def area_units(self) -> int:
        """Serial lanes: ``lanes`` per inner-product unit, one unit per (tile, filter, window)."""
        a = self.array
        return a["tiles"] * a["filters"] * a["windows"] * a["lanes"]

    def peak_macs_per_cycle(self, op: Gemm) -> float:
        window_step, row_step = self.serial_bits(op)
        per_step = self.columns * self.array["lanes"]
        return per_step * max(self.array["windows"] / window_step, 1 / row_step)


class StripesArray(_BitSerialArray):
    kind = "stripes"
    MAC_ENERGY_SCHEMA = {"pj_per_mac_per_activation_bit": POSITIVE}

    def serial_bits(self, op: Gemm) -> tuple[int, int]:
        return op.bits_a, 1

    def storage_bits(self, bits: int, operand: str) -> int:
        return bits if operand == "a" else PARALLEL_BITS

    def mac_energy_pj(self, op: Gemm) -> float:
        return self.mac_energy["pj_per_mac_per_activation_bit"] * op.bits_a


class LoomArray(_BitSerialArray):
    kind = "loom"
    MAC_ENERGY_SCHEMA = {"pj_per_bit_product": POSITIVE}

    def serial_bits(self, op: Gemm) -> tuple[int, int]:
        return op.bits_a * op.bits_b, op.bits_b

    def storage_bits(self, bits: int, operand: str) -> int:
        return bits

    def mac_energy_pj(self, op: Gemm) -> float:
        return self.mac_energy["pj_per_bit_product"] * op.bits_a * op.bits_b
