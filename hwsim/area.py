"""Silicon area of an accelerator: PE array by its precision model, SRAM by size, vector unit by lanes.

The constants live in each description's ``area`` section (with their sources), so the model here
is only the arithmetic that makes area follow the parameters a co-design sweep varies:

* array: ``array.area_units() × area.unit_um2``; a unit is whatever the PE model replicates (an
  8-bit MAC PE, a BitFusion Fusion Unit, one lane of a bit-serial inner-product unit), so the
  precision support of the array is priced in ``unit_um2``;
* SRAM: ``area.sram_mm2_per_kib[buffer]`` is the density at the geometry the description states
  (``sram.stated_at``; eDRAM buffers carry a denser figure); other sizes, bankings and word widths
  scale that area by CACTI's (:mod:`hwsim.sram`);
* vector unit: ``vector.lanes × area.vector_lane_um2``;
* token capabilities (patch-wise precision in hardware): the ``area_um2`` of each ``tokens`` key
  (:mod:`hwsim.tokens`), 0 on a plain preset.

Not modelled: DRAM PHY, NoC/control and clock-dependent sizing (a faster clock is free here).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim import sram, tokens
from hwsim.accelerator import BUFFERS, Accelerator
from hwsim.errors import ConfigError

UM2_PER_MM2 = 1e6
BYTES_PER_KIB = 1024


@dataclass(frozen=True)
class AreaBreakdown:
    """Area in mm² by block; ``sram_mm2`` per buffer (ifmap, filter, ofmap)."""

    array_mm2: float
    sram_mm2: dict[str, float]
    vector_mm2: float
    tokens_mm2: float = 0.0

    @property
    def total_mm2(self) -> float:
        return self.array_mm2 + sum(self.sram_mm2.values()) + self.vector_mm2 + self.tokens_mm2

    @staticmethod
    def columns() -> tuple[str, ...]:
        """The keys of :meth:`as_dict`, for table headers."""
        return ("area_mm2", "area_array_mm2", *(f"area_sram_{b}_mm2" for b in BUFFERS), "area_vector_mm2",
                "area_tokens_mm2")

    def as_dict(self) -> dict[str, float]:
        """Flat columns for tables: ``area_mm2`` (total) then each block."""
        values = (self.total_mm2, self.array_mm2, *(self.sram_mm2[b] for b in BUFFERS), self.vector_mm2,
                  self.tokens_mm2)
        return dict(zip(self.columns(), values, strict=True))


def has_area(accel: Accelerator) -> bool:
    return bool(accel.config.get("area"))


def area(accel: Accelerator) -> AreaBreakdown:
    """Area of ``accel`` from its description's ``area`` constants (HwsimError if it has none)."""
    constants = accel.config.get("area")
    if not constants:
        raise ConfigError(
            f"accelerator '{accel.name}' has no area section; add area.unit_um2, area.sram_mm2_per_kib and "
            f"area.vector_lane_um2 to its YAML (see accelerators/presets/*.yaml)"
        )
    density, stated = constants["sram_mm2_per_kib"], accel.config["sram"]["stated_at"]
    scale = sram.scales(accel.config["sram"], accel.config["buffers"], accel.name)
    return AreaBreakdown(
        array_mm2=accel.array.area_units() * constants["unit_um2"] / UM2_PER_MM2,
        sram_mm2={b: stated[b]["bytes"] / BYTES_PER_KIB * density[b] * scale[b].area for b in BUFFERS},
        vector_mm2=accel.vector.lanes * constants["vector_lane_um2"] / UM2_PER_MM2,
        tokens_mm2=tokens.area_mm2(accel),
    )
