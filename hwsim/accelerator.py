"""Accelerator description types: the PE-array precision model interface and the spec dataclass.

Concrete PE arrays (INT8 systolic, BitFusion, Stripes, Loom) live in the ``accelerators``
package; hwsim only needs the :class:`PEArray` interface, so it never imports them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hwsim.config import NON_NEGATIVE, POSITIVE, POSITIVE_INT, MapOf, Number, Optional, Text
from hwsim.memory import BUFFERS, MEMORY_SCHEMA
from hwsim.workload import Gemm


class PEArray(ABC):
    """How a compute array runs a GEMM tile at given operand bits.

    Tiles are ``m×k×n`` blocks of one GEMM instance. ``extents`` says how the array maps the
    three dimensions spatially (``None`` = streamed through in time); hwsim uses it to align
    tiles and to count how often the array re-reads A, B and partial sums from SRAM.
    """

    kind: ClassVar[str]
    ARRAY_SCHEMA: ClassVar[dict]
    MAC_ENERGY_SCHEMA: ClassVar[dict]

    def __init__(self, array: dict, mac_energy: dict) -> None:
        self.array = dict(array)
        self.mac_energy = dict(mac_energy)

    @abstractmethod
    def storage_bits(self, bits: int, operand: str) -> int:
        """Bits one element of operand ``'a'`` (activations) or ``'b'`` occupies in SRAM/DRAM."""

    @abstractmethod
    def extents(self, op: Gemm) -> tuple[int | None, int | None, int | None]:
        """Spatial extent of the array along (m, k, n); ``None`` for the streamed dimension."""

    @abstractmethod
    def tile_cycles(self, m: int, k: int, n: int, op: Gemm, stream_start: bool = True) -> int:
        """Busy cycles of the array for one tile, including per-fold fill/drain where the model has it.

        ``stream_start`` is False for a tile that continues its folds along the streamed
        dimension (a later piece of it, when buffers force a split); such a piece pays no
        new fill/drain, so compute cycles do not depend on buffer sizes.
        """

    def instance_overhead_cycles(self, op: Gemm) -> int:
        """Cycles paid once per GEMM instance (pipeline fill/drain of models that stream folds back to back)."""
        return 0

    @abstractmethod
    def peak_macs_per_cycle(self, op: Gemm) -> float:
        """Best-case MACs per cycle at the op's bits (for utilisation and the lower bound)."""

    @abstractmethod
    def mac_energy_pj(self, op: Gemm) -> float:
        """Dynamic array energy per MAC at the op's bits."""

    @abstractmethod
    def area_units(self) -> int:
        """How many identical compute units the array replicates; ``area.unit_um2`` prices one
        (see :mod:`hwsim.area`)."""

    def granules(self, op: Gemm) -> tuple[int, int, int]:
        return tuple(1 if extent is None else extent for extent in self.extents(op))

    def compute_cycles(self, op: Gemm) -> int:
        """Closed-form busy cycles of one untiled instance (what a single whole-GEMM tile would take)."""
        return self.tile_cycles(op.m, op.k, op.n, op) + self.instance_overhead_cycles(op)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Buffers:
    """On-chip SRAM per operand, in bytes (double-buffered: a tile may use half), and psum width."""

    ifmap: int
    filter: int
    ofmap: int
    psum_bits: int

    def bits(self, buffer: str) -> int:
        return getattr(self, buffer) * 8


@dataclass(frozen=True)
class Dram:
    bandwidth_bits_per_cycle: float
    energy_pj_per_bit: float

    def cycles(self, bits: int) -> int:
        return math.ceil(bits / self.bandwidth_bits_per_cycle) if bits else 0


@dataclass(frozen=True)
class VectorUnit:
    lanes: int
    cycles_per_element: dict[str, float]
    energy_pj_per_element: dict[str, float]


@dataclass(frozen=True)
class SramEnergy:
    read_pj_per_bit: dict[str, float]
    write_pj_per_bit: dict[str, float]


@dataclass(frozen=True, eq=False)
class Accelerator:
    """A complete accelerator: PE array model, buffers, DRAM, vector unit, clock and energy constants.

    ``config`` is the validated description it was built from (written into result JSON);
    ``sources`` maps key paths to where each constant comes from; ``hwsim.area(accel)`` prices its
    silicon from the ``area`` section of ``config``.
    """

    name: str
    kind: str
    clock_hz: float
    array: PEArray
    buffers: Buffers
    dram: Dram
    vector: VectorUnit
    sram_energy: SramEnergy
    static_power_w: float
    sources: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def dataflow(self) -> str | None:
        return self.array.array.get("dataflow")


VECTOR_SCHEMA = {
    "lanes": POSITIVE_INT,
    "cycles_per_element": MapOf(POSITIVE),
    "energy_pj_per_element": MapOf(NON_NEGATIVE),
}
SRAM_ENERGY_SCHEMA = {buffer: {"read": NON_NEGATIVE, "write": NON_NEGATIVE} for buffer in BUFFERS}
AREA_SCHEMA = {
    "unit_um2": POSITIVE,
    "sram_mm2_per_kib": {buffer: POSITIVE for buffer in BUFFERS},
    "vector_lane_um2": NON_NEGATIVE,
}


def accelerator_schema(array_schema: dict, mac_energy_schema: dict) -> dict:
    """The full YAML schema, with the model-specific ``array`` and ``energy.mac`` parts plugged in."""
    return {
        "name": Text(),
        "kind": Text(),
        "description": Optional(Text(), ""),
        "clock_hz": POSITIVE,
        "array": array_schema,
        "buffers": {
            "ifmap": POSITIVE_INT,
            "filter": POSITIVE_INT,
            "ofmap": POSITIVE_INT,
            "psum_bits": Number(integer=True, maximum=64),
        },
        "dram": {  # energy per bit, or a technology whose figure hwsim.memory.DRAM_TECHNOLOGIES gives
            "bandwidth_bits_per_cycle": POSITIVE,
            "energy_pj_per_bit": Optional(NON_NEGATIVE, None),
            "technology": Optional(Text(), None),
        },
        "vector": VECTOR_SCHEMA,
        "energy": {
            "mac": mac_energy_schema,
            "sram_pj_per_bit": SRAM_ENERGY_SCHEMA,
            "static_power_w": NON_NEGATIVE,
        },
        "memory": Optional(MEMORY_SCHEMA, None),  # size-dependent SRAM figures (hwsim.memory)
        "area": Optional(AREA_SCHEMA, None),
        "sources": Optional(MapOf(Text()), {}),
    }
