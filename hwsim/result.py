"""Result types: one :class:`OpCost` row per op and a :class:`SimResult` holding rows and totals."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hwsim.accelerator import BUFFERS, Accelerator
from hwsim.area import area, has_area
from hwsim.files import atomic_write_text, json_text

ENERGY_PARTS = ("mac", "sram", "dram", "vector", "static")


@dataclass(frozen=True)
class OpCost:
    """Cost of one op (all ``count`` instances). Bits are totals, energies in pJ, cycles exact."""

    name: str
    kind: str
    count: int
    bits_a: int
    bits_b: int
    tile: str
    cycles: int
    compute_cycles: int
    stall_cycles: int
    utilization: float
    macs: int
    bops: int
    sram_read_bits_ifmap: int
    sram_read_bits_filter: int
    sram_read_bits_ofmap: int
    sram_write_bits_ifmap: int
    sram_write_bits_filter: int
    sram_write_bits_ofmap: int
    dram_read_bits: int
    dram_write_bits: int
    energy_mac_pj: float
    energy_sram_pj: float
    energy_dram_pj: float
    energy_vector_pj: float
    energy_static_pj: float
    latency_s: float

    @property
    def energy_pj(self) -> float:
        return sum(self.energy_breakdown.values())

    @property
    def energy_breakdown(self) -> dict[str, float]:
        return {part: getattr(self, f"energy_{part}_pj") for part in ENERGY_PARTS}

    @property
    def sram_read_bits(self) -> dict[str, int]:
        return {buffer: getattr(self, f"sram_read_bits_{buffer}") for buffer in BUFFERS}

    @property
    def sram_write_bits(self) -> dict[str, int]:
        return {buffer: getattr(self, f"sram_write_bits_{buffer}") for buffer in BUFFERS}

    def as_row(self) -> dict[str, Any]:
        return {**asdict(self), "energy_pj": self.energy_pj}


@dataclass
class SimResult:
    """Per-op rows plus totals; ops run one after another, so every total is the sum of its rows."""

    accelerator: Accelerator
    ops: list[OpCost]
    method: str = "simulate"

    def _sum(self, attr: str):
        return sum(getattr(op, attr) for op in self.ops)

    @property
    def cycles(self) -> int:
        return self._sum("cycles")

    @property
    def compute_cycles(self) -> int:
        return self._sum("compute_cycles")

    @property
    def stall_cycles(self) -> int:
        return self._sum("stall_cycles")

    @property
    def macs(self) -> int:
        return self._sum("macs")

    @property
    def bops(self) -> int:
        return self._sum("bops")

    @property
    def dram_read_bits(self) -> int:
        return self._sum("dram_read_bits")

    @property
    def dram_write_bits(self) -> int:
        return self._sum("dram_write_bits")

    @property
    def energy_breakdown(self) -> dict[str, float]:
        return {part: self._sum(f"energy_{part}_pj") for part in ENERGY_PARTS}

    @property
    def energy_pj(self) -> float:
        return sum(self.energy_breakdown.values())

    @property
    def latency_s(self) -> float:
        return self.cycles / self.accelerator.clock_hz

    @property
    def utilization(self) -> float:
        """MACs done over MACs the array could have done at each GEMM's bits in its cycles."""
        capacity = sum(op.macs / op.utilization for op in self.ops if op.macs and op.utilization)
        return self.macs / capacity if capacity else 0.0

    def __getitem__(self, name: str) -> OpCost:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator.name,
            "method": self.method,
            "ops": len(self.ops),
            "cycles": self.cycles,
            "latency_s": self.latency_s,
            "energy_pj": self.energy_pj,
            "energy_breakdown_pj": self.energy_breakdown,
            "bops": self.bops,
            "macs": self.macs,
            "utilization": self.utilization,
            "compute_cycles": self.compute_cycles,
            "stall_cycles": self.stall_cycles,
            "dram_read_bits": self.dram_read_bits,
            "dram_write_bits": self.dram_write_bits,
            "area_mm2": area(self.accelerator).total_mm2 if has_area(self.accelerator) else None,
        }

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Per-op table, one row per op, plain CSV (written atomically)."""
        names = [f.name for f in fields(OpCost)] + ["energy_pj"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for op in self.ops:
            writer.writerow(op.as_row())
        return atomic_write_text(path, buffer.getvalue())

    def to_json(self, path: str | os.PathLike) -> Path:
        """Summary plus the accelerator description and its sources (written atomically)."""
        payload = {
            **self.summary(),
            "accelerator_config": self.accelerator.config,
            "accelerator_sources": self.accelerator.sources,
        }
        return atomic_write_text(path, json_text(payload))
