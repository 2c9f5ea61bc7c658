"""Concrete accelerator models and their YAML presets.

``accelerators.load("bitfusion")`` or ``accelerators.load("my_accel.yaml")`` returns a
validated :class:`hwsim.Accelerator`. The ``kind`` key picks the PE-array model
(``MODELS``); the model fixes which keys ``array`` and ``energy.mac`` take. Every key is
checked; an error names the file and the key path.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from accelerators.bitfusion import BitFusionArray
from accelerators.bitserial import LoomArray, StripesArray
from accelerators.systolic import SystolicArray
from hwsim.accelerator import (
    BUFFERS,
    Accelerator,
    Buffers,
    Dram,
    PEArray,
    SramEnergy,
    VectorUnit,
    accelerator_schema,
)
from hwsim.config import validate
from hwsim.errors import ConfigError, UnknownAcceleratorError

PRESET_DIR = Path(__file__).with_name("presets")
MODELS: dict[str, type[PEArray]] = {
    model.kind: model for model in (SystolicArray, BitFusionArray, StripesArray, LoomArray)
}

__all__ = ["MODELS", "PRESET_DIR", "available", "from_dict", "load"]


def available() -> list[str]:
    """Names of the bundled presets."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def _key_exists(config: dict, path: str) -> bool:
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def from_dict(data: dict, source: str = "<dict>") -> Accelerator:
    """Validate a parsed description and build the :class:`hwsim.Accelerator` (``source`` names it in errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"accelerator '{source}': the document must be a mapping of keys, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in MODELS:
        raise ConfigError(f"accelerator '{source}': kind must be one of {', '.join(MODELS)}, got {kind!r}")
    model = MODELS[kind]
    config = validate(accelerator_schema(model.ARRAY_SCHEMA, model.MAC_ENERGY_SCHEMA), data, source)
    for path in config["sources"]:
        if not _key_exists(config, path):
            raise ConfigError(f"accelerator '{source}': sources.{path} names no key of this description; fix the path")
    energy, vector = config["energy"], config["vector"]
    return Accelerator(
        name=config["name"],
        kind=kind,
        clock_hz=float(config["clock_hz"]),
        array=model(config["array"], energy["mac"]),
        buffers=Buffers(**config["buffers"]),
        dram=Dram(**config["dram"]),
        vector=VectorUnit(vector["lanes"], dict(vector["cycles_per_element"]), dict(vector["energy_pj_per_element"])),
        sram_energy=SramEnergy(
            {b: energy["sram_pj_per_bit"][b]["read"] for b in BUFFERS},
            {b: energy["sram_pj_per_bit"][b]["write"] for b in BUFFERS},
        ),
        static_power_w=float(energy["static_power_w"]),
        sources=dict(config["sources"]),
        config=config,
    )


def load(name_or_path: str | os.PathLike) -> Accelerator:
    """A preset by name (see :func:`available`) or a YAML file path."""
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = PRESET_DIR / f"{text}.yaml"
        if not path.is_file():
            raise UnknownAcceleratorError(
                f"unknown accelerator {text!r}; use one of {', '.join(available())} or a path to a YAML file"
            )
    if not path.is_file():
        raise ConfigError(f"accelerator '{text}': no such file; pass an existing YAML path or a preset name")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"accelerator '{path}': not UTF-8 text (byte {err.start}: {err.reason}); "
                          "save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"accelerator '{path}': malformed YAML{where} ({problem}); fix the syntax") from None
    return from_dict(data, source=str(path))
