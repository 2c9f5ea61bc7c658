"""Size-dependent SRAM energy and area (CACTI tables) and DRAM energy per bit by technology.

An accelerator description states SRAM energy per bit (``energy.sram_pj_per_bit``) and area density
(``area.sram_mm2_per_kib``) for the buffers it describes: those are facts (BitFusion's come from
its own CACTI flow) *at that geometry*. A co-design sweep that changes a buffer's size, banking or
word width leaves that geometry, so the ``sram`` section scales the stated figures by what CACTI
says the change costs::

    per-bit energy = stated × E(geometry) / E(stated geometry)
    area           = stated density × stated KiB × A(geometry) / A(stated geometry)

``E`` is the per-access energy of one bank (``bytes / banks`` of ``word_bits`` words) divided by
the word width, ``A`` the area of all banks (BitFusion's flow prices a banked buffer the same way).
``stated_at`` records the geometry the figures hold for; when a file leaves it out, it is the
file's own buffers, so every description keeps its numbers and only a changed geometry moves them.
``sram.table: constant`` switches scaling off (the per-bit energy is then the same at any size, the area
linear in KiB). The table is committed (``hwsim/data/sram_<name>.csv``, made by
``scripts/sram_table.py`` from CACTI through ``hwcomponents-cacti``), so hwsim needs no CACTI.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.config import POSITIVE_INT, Number, Optional, Text
from hwsim.errors import ConfigError

DATA_DIR = Path(__file__).with_name("data")
DEFAULT_TABLE = "cacti_45nm"
CONSTANT = "constant"  # ``sram.table`` value that switches size scaling off
BUFFERS = ("ifmap", "filter", "ofmap")
DEFAULT_GEOMETRY = {"word_bits": 64, "banks": 1, "ports": 1}
SHALLOW_EXPONENTS = (0.78, 0.78, 1.0)  # read, write, area ∝ depth^e below the table (hwcomponents-cacti's scaling)

GEOMETRY_SCHEMA = {
    "word_bits": POSITIVE_INT,
    "banks": POSITIVE_INT,
    "ports": Number(integer=True, maximum=2),
}
SRAM_SCHEMA = {
    "table": Optional(Text(), DEFAULT_TABLE),
    **{buffer: Optional(GEOMETRY_SCHEMA, None) for buffer in BUFFERS},
    "stated_at": Optional({buffer: {"bytes": POSITIVE_INT, **GEOMETRY_SCHEMA} for buffer in BUFFERS}, None),
}

DRAM_TECHNOLOGIES: dict[str, tuple[float, str]] = {
    "lpddr4": (8.0, "hwcomponents-cacti 1.0.40 (Accelergy) DRAM model: LPDDR4 8 pJ/bit"),
    "ddr4": (20.0, "Horowitz ISSCC 2014: commodity DRAM 1.3-2.6 nJ per 64 bits; the low end, 20 pJ/bit, "
                   "taken for DDR4 (assumption: the paper gives no per-generation figure)"),
    "hbm2": (3.97, "O'Connor et al., Fine-Grained DRAM, MICRO 2017: HBM2 3.97 pJ/bit"),
}
"""DRAM access energy per bit by technology (``dram.technology``), with where each figure comes from."""


def dram_energy_pj_per_bit(technology: str, source: str) -> float:
    if technology not in DRAM_TECHNOLOGIES:
        raise ConfigError(f"accelerator '{source}': dram.technology must be one of "
                          f"{', '.join(DRAM_TECHNOLOGIES)}, got {technology!r}")
    return DRAM_TECHNOLOGIES[technology][0]


@dataclass(frozen=True)
class Geometry:
    """One buffer: total bytes, split into ``banks`` arrays of ``word_bits``-wide words with ``ports`` ports."""

    bytes: int
    word_bits: int
    banks: int
    ports: int


@dataclass(frozen=True)
class SramTable:
    """Per-access read/write energy (pJ) and area (mm²) of one SRAM array by capacity, word width, ports."""

    name: str
    note: str
    grid: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]  # (word_bits, ports) → (log2 bytes, log values)

    @property
    def words(self) -> list[int]:
        return sorted({word for word, _ in self.grid})

    def array(self, capacity: float, word_bits: int, ports: int) -> np.ndarray:
        """[read pJ, write pJ, area mm²] of one array, log-log interpolated in capacity and word width."""
        words = [w for w in self.words if (w, ports) in self.grid]
        if not words:
            raise ValueError(f"no {ports}-port rows")
        if not words[0] <= word_bits <= words[-1]:
            raise ValueError(f"word width {word_bits} bits is outside {words[0]}..{words[-1]}")
        upper = next(w for w in words if w >= word_bits)
        lower = max(w for w in words if w <= word_bits)
        ends = [self._along_capacity(capacity, w, ports) for w in (lower, upper)]
        t = 0.0 if upper == lower else (math.log2(word_bits) - math.log2(lower)) / (math.log2(upper) - math.log2(lower))
        return np.exp((1 - t) * ends[0] + t * ends[1])

    def _along_capacity(self, capacity: float, word_bits: int, ports: int) -> np.ndarray:
        sizes, logs = self.grid[word_bits, ports]
        x = math.log2(capacity)
        if x > sizes[-1] + 1e-9:
            raise ValueError(f"{capacity:.0f} bytes per bank is above the table's {2 ** sizes[-1]:.0f} bytes "
                             f"at {word_bits}-bit words")
        if x < sizes[0]:  # CACTI has no smaller arrays: hwcomponents-cacti's own rule for shallower ones
            return logs[0] + math.log(2 ** (x - sizes[0])) * np.array(SHALLOW_EXPONENTS)
        return np.array([np.interp(x, sizes, column) for column in logs.T])


@lru_cache(maxsize=8)
def load_table(name: str) -> SramTable:
    """A table by name (``hwsim/data/sram_<name>.csv``) or by CSV path; ``#`` lines are its provenance."""
    path = Path(name) if name.endswith(".csv") else DATA_DIR / f"sram_{name}.csv"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("sram_") for p in DATA_DIR.glob("sram_*.csv"))
        raise ConfigError(f"sram.table {name!r} is not an SRAM table: use {', '.join(known)}, '{CONSTANT}' "
                          "or a CSV path made by scripts/sram_table.py")
    lines = path.read_text().splitlines()
    note = " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    by_key: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
    for row in rows:
        key = int(row["word_bits"]), int(row["ports"])
        by_key.setdefault(key, []).append((math.log2(int(row["capacity_bytes"])), float(row["read_pj"]),
                                           float(row["write_pj"]), float(row["area_mm2"])))
    grid = {}
    for key, entries in by_key.items():
        data = np.array(sorted(entries))
        grid[key] = (data[:, 0], np.log(data[:, 1:]))
    return SramTable(path.stem.removeprefix("sram_"), note, grid)


def resolve(sram: Mapping[str, Any] | None, buffers: Mapping[str, int]) -> dict[str, Any]:
    """The full ``sram`` section: default table and geometry filled in, ``stated_at`` = own buffers if absent."""
    sram = dict(sram or {})
    resolved: dict[str, Any] = {"table": sram.get("table") or DEFAULT_TABLE}
    for buffer in BUFFERS:
        resolved[buffer] = dict(sram.get(buffer) or DEFAULT_GEOMETRY)
    resolved["stated_at"] = sram.get("stated_at") or {
        buffer: {"bytes": buffers[buffer], **resolved[buffer]} for buffer in BUFFERS}
    return resolved


@dataclass(frozen=True)
class BufferScale:
    """Factors applied to a buffer's stated read/write energy per bit and its stated area."""

    read: float
    write: float
    area: float


def scales(sram: Mapping[str, Any], buffers: Mapping[str, int], source: str) -> dict[str, BufferScale]:
    """Per buffer, how much its geometry costs relative to the stated one (all 1 with ``table: constant``)."""
    if sram["table"] == CONSTANT:
        return {buffer: BufferScale(1.0, 1.0, buffers[buffer] / sram["stated_at"][buffer]["bytes"])
                for buffer in BUFFERS}
    try:
        table = load_table(sram["table"])
    except ConfigError as err:
        raise ConfigError(f"accelerator '{source}': {err}") from None
    result = {}
    for buffer in BUFFERS:
        now = Geometry(buffers[buffer], **sram[buffer])
        stated = Geometry(**sram["stated_at"][buffer])
        try:
            ratio = buffer_cost(table, now) / buffer_cost(table, stated)
        except ValueError as err:
            raise ConfigError(f"accelerator '{source}': buffer {buffer} ({now.bytes} bytes in {now.banks} bank(s) of "
                              f"{now.word_bits}-bit words, {now.ports} port(s)) is outside SRAM table "
                              f"'{table.name}': {err}; change buffers.{buffer} or sram.{buffer}") from None
        result[buffer] = BufferScale(*map(float, ratio))
    return result


def buffer_cost(table: SramTable, geometry: Geometry) -> np.ndarray:
    """[read pJ/bit, write pJ/bit, area mm²] of a banked buffer: one bank's access, all banks' area."""
    read, write, area = table.array(geometry.bytes / geometry.banks, geometry.word_bits, geometry.ports)
    return np.array([read / geometry.word_bits, write / geometry.word_bits, area * geometry.banks])
