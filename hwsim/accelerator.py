"""Accelerator description types: the PE-array precision model interface and the spec dataclass.

Concrete PE arrays (INT8 systolic, BitFusion, Stripes, Loom) live in the ``accelerators``
package; hwsim only needs the :class:`PEArray` interface, so it never imports them.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwsim.config import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Choice,
    Either,
    ListOf,
    MapOf,
    Number,
    Optional,
    Text,
)
from hwsim.errors import ConfigError
from hwsim.sram import BUFFERS, SRAM_SCHEMA
from hwsim.tokens import TOKENS_SCHEMA
from hwsim.workload import MAX_BITS, Gemm

ORDERS = tuple("".join(order) for order in itertools.permutations("mkn"))
"""Tile loop nests, outer to inner (``"nmk"``: for each n-block, each m-block, each k-block)."""


class PEArray(ABC):
    """How a compute array runs a GEMM tile at given operand bits.

    Tiles are ``m×k×n`` blocks of one GEMM instance. ``extents`` says how the array maps the
    three dimensions spatially (``None`` = streamed through in time); hwsim uses it to count how
    often the array re-reads A, B and partial sums from SRAM. A model is built from its validated
    YAML ``array`` and ``energy.mac`` sections as the typed dataclasses ``Params`` and ``MacEnergy``.
    """

    kind: ClassVar[str]
    ARRAY_SCHEMA: ClassVar[dict]
    MAC_ENERGY_SCHEMA: ClassVar[dict]
    Params: ClassVar[type]
    MacEnergy: ClassVar[type]

    def __init__(self, params: Any, mac_energy: Any) -> None:
        self.params = params
        self.mac_energy = mac_energy

    @classmethod
    def from_config(cls, array: dict, mac_energy: dict) -> PEArray:
        """The model from validated ``array`` / ``energy.mac`` sections (see ``ARRAY_SCHEMA``)."""
        return cls(cls.Params(**array), cls.MacEnergy(**mac_energy))

    @property
    def dataflow(self) -> str | None:
        """Which operand the array keeps stationary (``ws``/``os``/``is``), if it has one."""
        return None

    @abstractmethod
    def readable_storage_bits(self, operand: str) -> tuple[int, ...]:
        """Storage widths the array can read operand ``'a'`` or ``'b'`` from (``memory.storage_bits``
        must use only these)."""

    @abstractmethod
    def extents(self, op: Gemm) -> tuple[int | None, int | None, int | None]:
        """Spatial extent of the array along (m, k, n); ``None`` for the streamed dimension."""

    def alignment(self) -> tuple[int, int, int]:
        """Tile-size step along (m, k, n) the mapper tries, independent of bits (so a plan legal
        at some bits is a candidate at every narrower bits too)."""
        return (1, 1, 1)

    @abstractmethod
    def tile_cycles(self, m, k, n, op: Gemm, stream_start: bool = True):
        """Busy cycles of the array for one tile, including per-fold fill/drain where the model has it.

        ``m, k, n`` may be ints or numpy integer arrays (the mapper costs many tiles at once).
        ``stream_start`` is False for a tile that continues its folds along the streamed
        dimension (a later piece of it, when buffers force a split); such a piece pays no
        new fill/drain, so compute cycles do not depend on buffer sizes.
        """

    def instance_overhead_cycles(self, op: Gemm) -> int:
        """Cycles paid once per GEMM instance (pipeline fill/drain of models that stream folds back to back)."""
        return 0

    def loop_orders(self) -> tuple[str, ...]:
        """Tile loop nests legal on this array (any order is, partial sums being placed by the mapper)."""
        return ORDERS

    def precision_key(self, op: Gemm) -> tuple:
        """What of the op's bits the array's timing and MAC energy depend on: two variants of a GEMM
        with equal keys (and equal storage widths) map and cost alike except for their bits and BOPs,
        so a cost table prices them once (:mod:`hwsim.costtable`). Default: the bits themselves."""
        return op.bits_a, op.bits_b

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

    def compute_cycles(self, op: Gemm) -> int:
        """Closed-form busy cycles of one untiled instance (what a single whole-GEMM tile would take)."""
        return int(self.tile_cycles(op.m, op.k, op.n, op)) + self.instance_overhead_cycles(op)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Buffers:
    """On-chip memory per operand, in bytes (double-buffered: a tile may use half)."""

    ifmap: int
    filter: int
    ofmap: int

    def bits(self, buffer: str) -> int:
        return getattr(self, buffer) * 8


PSUM_PLACES = ("buffer", "dram")
ONCHIP = ("activations", "weights")


@dataclass(frozen=True)
class Memory:
    """Where data lives and at what width: facts of a design, each with a source in its YAML.

    ``psum_in``: where the partial sums of an output block may wait while the mapper's loop nest
    visits other blocks between two of its k-steps: the output ``buffer`` (all open blocks must
    fit it) or ``dram`` (spilled and re-read at ``psum_bits`` each time). ``output_bits``: width
    outputs are written back at (``None``: the op's own ``bits_out``, i.e. requantised on chip).
    ``storage_a`` / ``storage_b``: widths an element may be stored at; a precision takes the
    smallest that holds it. ``onchip``: data a DaDianNao-style design keeps in its on-chip memories
    between layers when it fits (``activations`` in the ifmap memory, ``weights`` preloaded in the
    filter memory), so a layer that fits touches DRAM for none of it; one that does not is
    streamed from DRAM like on any other design.
    """

    psum_bits: int
    psum_in: tuple[str, ...]
    output_bits: int | None
    storage_a: tuple[int, ...]
    storage_b: tuple[int, ...]
    onchip: tuple[str, ...] = ()

    def storage_bits(self, bits: int, operand: str) -> int:
        """Bits one element of operand ``'a'`` or ``'b'`` at precision ``bits`` occupies in memory
        (wider than every listed width, e.g. a 32-bit output: its own width)."""
        widths = self.storage_a if operand == "a" else self.storage_b
        return next((width for width in widths if width >= bits), bits)

    def out_bits(self, op: Gemm) -> int:
        """Bits one output element is written back at."""
        return self.storage_bits(op.out_bits, "a") if self.output_bits is None else self.output_bits


@dataclass(frozen=True)
class Dram:
    """The DRAM interface. ``read_bandwidth_bits_per_cycle``: a reference whose operands each read over
    their own port (SCALE-Sim: ifmap and filter at ``IfmapSRAMBankBandwidth`` /
    ``FilterSRAMBankBandwidth``, outputs written at ``Bandwidth``) states that per-port rate here; only
    that reference's replay reads it. None: one shared channel at ``bandwidth_bits_per_cycle``."""

    bandwidth_bits_per_cycle: float
    energy_pj_per_bit: float
    read_bandwidth_bits_per_cycle: float | None = None
    transfer_bits: float | None = None  # the unit one transfer is rounded up to; None: one beat

    @property
    def unit_bits(self) -> float:
        return self.bandwidth_bits_per_cycle if self.transfer_bits is None else self.transfer_bits

    @property
    def ticks_per_cycle(self) -> int:
        """Channel time is counted in ticks of one transfer unit: 1 per cycle when transfers round up
        to whole beats, ``bandwidth / transfer_bits`` when they are finer (a cycle-level result rounds
        the op's total up to whole cycles once)."""
        return round(self.bandwidth_bits_per_cycle / self.unit_bits)

    def ticks(self, bits):
        """Channel ticks of transfers of ``bits`` (an int or an array), each rounded up to whole units."""
        units = np.asarray(bits) / self.unit_bits
        return np.ceil(units, out=units if units.ndim else None).astype(np.int64)  # arrays rounded in place


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
    memory: Memory
    dram: Dram
    vector: VectorUnit
    sram_energy: SramEnergy
    static_power_w: float
    sources: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def dataflow(self) -> str | None:
        return self.array.dataflow


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


WIDTH = Number(integer=True, maximum=64)
MEMORY_SCHEMA = {
    "psum_bits": WIDTH,
    "psum_in": ListOf(Choice(PSUM_PLACES)),
    "output_bits": Either(WIDTH, Choice(("op",))),
    "storage_bits": {"a": ListOf(WIDTH), "b": ListOf(WIDTH)},
    "onchip": Optional(ListOf(Choice(ONCHIP), empty=True), []),
}


def _fail(source: str, message: str) -> ConfigError:
    return ConfigError(f"accelerator '{source}': {message}")


def memory_from_config(section: dict, array: PEArray, source: str) -> Memory:
    """The validated ``memory`` section as :class:`Memory`; storage widths must be ones the array reads."""
    widths = {}
    for operand in ("a", "b"):
        listed = sorted(set(section["storage_bits"][operand]))
        readable = array.readable_storage_bits(operand)
        for width in listed:
            if width not in readable:
                raise _fail(source, f"memory.storage_bits.{operand} lists {width}-bit storage, which a "
                                    f"'{array.kind}' array cannot read; use widths from {list(readable)}")
        if listed[-1] < MAX_BITS:
            raise _fail(source, f"memory.storage_bits.{operand} has no width for {MAX_BITS}-bit operands; "
                                f"add a width >= {MAX_BITS} from {list(readable)}")
        widths[operand] = tuple(listed)
    output = section["output_bits"]
    return Memory(section["psum_bits"], tuple(dict.fromkeys(section["psum_in"])), None if output == "op" else output,
                  widths["a"], widths["b"], tuple(dict.fromkeys(section["onchip"])))


def check_smallest_tile_fits(buffers: Buffers, memory: Memory, source: str) -> None:
    """Every buffer must hold, double-buffered, the smallest legal tile (one element of 16-bit operands,
    one partial sum), else no op could ever be mapped."""
    needs = {
        "ifmap": (memory.storage_bits(MAX_BITS, "a"), f"{MAX_BITS}-bit A element"),
        "filter": (memory.storage_bits(MAX_BITS, "b"), f"{MAX_BITS}-bit B element"),
        "ofmap": (memory.psum_bits, f"{memory.psum_bits}-bit partial sum"),
    }
    for buffer, (bits, what) in needs.items():
        need = ceil_div(2 * bits, 8)
        if getattr(buffers, buffer) < need:
            raise _fail(source, f"buffers.{buffer} ({getattr(buffers, buffer)} bytes) cannot hold one {what} "
                                f"double-buffered; set buffers.{buffer} >= {need}")


def accelerator_schema(array_schema: dict, mac_energy_schema: dict) -> dict:
    """The full YAML schema, with the model-specific ``array`` and ``energy.mac`` parts plugged in."""
    return {
        "name": Text(),
        "kind": Text(),
        "description": Optional(Text(), ""),
        "clock_hz": POSITIVE,
        "array": array_schema,
        "buffers": {"ifmap": POSITIVE_INT, "filter": POSITIVE_INT, "ofmap": POSITIVE_INT},
        "memory": MEMORY_SCHEMA,
        "dram": {  # energy per bit, or a technology whose figure hwsim.sram.DRAM_TECHNOLOGIES gives
            "bandwidth_bits_per_cycle": POSITIVE,
            "energy_pj_per_bit": Optional(NON_NEGATIVE, None),
            "technology": Optional(Text(), None),
            "read_bandwidth_bits_per_cycle": Optional(POSITIVE, None),
            "transfer_bits": Optional(POSITIVE, None),  # None: one beat (bandwidth_bits_per_cycle)
        },
        "vector": VECTOR_SCHEMA,
        "energy": {
            "mac": mac_energy_schema,
            "sram_pj_per_bit": SRAM_ENERGY_SCHEMA,
            "static_power_w": NON_NEGATIVE,
        },
        "sram": Optional(SRAM_SCHEMA, None),  # size-dependent SRAM energy and area (hwsim.sram)
        "area": Optional(AREA_SCHEMA, None),
        "tokens": Optional(TOKENS_SCHEMA, None),
        "sources": Optional(MapOf(Text()), {}),
    }
