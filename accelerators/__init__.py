"""Concrete accelerator models and their YAML presets.

``accelerators.load("bitfusion")`` or ``accelerators.load("my_accel.yaml")`` returns a
validated :class:`hwsim.Accelerator`. The ``kind`` key picks the PE-array model from the registry
(:func:`register_pe_model`, or the ``pmq.pe_models`` entry points); the model fixes which keys
``array`` and ``energy.mac`` take. Every key is checked; an error names the file and the key path.

``extends: NAME`` (a preset name, or a YAML path relative to the file) starts a description from
another one: its keys are merged in, mapping by mapping, and only what the new design adds or
changes is written (a derived design keeps every fact, and source, of its base).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from accelerators import bitfusion, bitserial, systolic  # noqa: F401  (the built-in models register themselves)
from accelerators.registry import PE_MODELS, pe_model, register_pe_model
from hwsim import sram
from hwsim.accelerator import (
    BUFFERS,
    Accelerator,
    Buffers,
    Dram,
    SramEnergy,
    VectorUnit,
    accelerator_schema,
    check_smallest_tile_fits,
    memory_from_config,
)
from hwsim.config import validate
from hwsim.errors import ConfigError, UnknownAcceleratorError

PRESET_DIR = Path(__file__).with_name("presets")
MODELS = PE_MODELS

__all__ = ["MODELS", "PE_MODELS", "PRESET_DIR", "available", "from_dict", "load", "register_pe_model"]


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
    model = pe_model(kind, source)
    config = validate(accelerator_schema(model.ARRAY_SCHEMA, model.MAC_ENERGY_SCHEMA), data, source)
    for path in config["sources"]:
        if not _key_exists(config, path):
            raise ConfigError(f"accelerator '{source}': sources.{path} names no key of this description; fix the path")
    config["sram"] = sram.resolve(config["sram"], config["buffers"])
    scale = sram.scales(config["sram"], config["buffers"], source)
    energy, vector = config["energy"], config["vector"]
    array = model.from_config(config["array"], energy["mac"])
    buffers = Buffers(**config["buffers"])
    memory = memory_from_config(config["memory"], array, source)
    check_smallest_tile_fits(buffers, memory, source)
    return Accelerator(
        name=config["name"],
        kind=kind,
        clock_hz=float(config["clock_hz"]),
        array=array,
        buffers=buffers,
        memory=memory,
        dram=Dram(config["dram"]["bandwidth_bits_per_cycle"], _dram_energy(config["dram"], source),
                 config["dram"]["read_bandwidth_bits_per_cycle"], _transfer_bits(config["dram"], source)),
        vector=VectorUnit(vector["lanes"], dict(vector["cycles_per_element"]), dict(vector["energy_pj_per_element"])),
        sram_energy=SramEnergy(
            {b: energy["sram_pj_per_bit"][b]["read"] * scale[b].read for b in BUFFERS},
            {b: energy["sram_pj_per_bit"][b]["write"] * scale[b].write for b in BUFFERS},
        ),
        static_power_w=float(energy["static_power_w"]),
        sources=_with_dram_source(config),
        config=config,
    )


def _merged(base: dict, changes: dict) -> dict:
    """``changes`` over ``base``: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def _with_dram_source(config: dict) -> dict[str, str]:
    """The description's sources, plus where a ``dram.technology``'s figure comes from (unless it says)."""
    sources = dict(config["sources"])
    technology = config["dram"]["technology"]
    if technology is not None:
        sources.setdefault("dram.technology", sram.DRAM_TECHNOLOGIES[technology][1])
    return sources


def _dram_energy(dram: dict, source: str) -> float:
    """DRAM pJ/bit as stated, or the figure of ``dram.technology`` (one of the two, not both)."""
    stated, technology = dram["energy_pj_per_bit"], dram["technology"]
    if (stated is None) == (technology is None):
        raise ConfigError(f"accelerator '{source}': dram needs exactly one of energy_pj_per_bit or technology "
                          f"({', '.join(sram.DRAM_TECHNOLOGIES)}); got {'both' if technology else 'neither'}")
    return stated if technology is None else sram.dram_energy_pj_per_bit(technology, source)


def _transfer_bits(dram: dict, source: str) -> float | None:
    """``dram.transfer_bits``, checked to split one beat into whole transfer units."""
    unit, beat = dram["transfer_bits"], dram["bandwidth_bits_per_cycle"]
    if unit is not None and (unit > beat or beat / unit != round(beat / unit)):
        raise ConfigError(f"accelerator '{source}': dram.transfer_bits ({unit}) must divide "
                          f"dram.bandwidth_bits_per_cycle ({beat}) into a whole number of units; "
                          "set it to a divisor of the beat, or leave it out for whole beats")
    return unit


def _read(name_or_path: str | os.PathLike, relative_to: Path | None = None, chain: tuple[Path, ...] = ()) -> tuple[dict, Path]:
    """The parsed description of a preset name or YAML path, with its ``extends`` chain merged in."""
    text = str(name_or_path)
    path = Path(text)
    if relative_to is not None and not path.is_absolute() and path.suffix in (".yaml", ".yml"):
        path = relative_to / path
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
    if not isinstance(data, dict) or "extends" not in data:
        return data, path
    base_name = data.pop("extends")
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"accelerator '{path}': extends must name a preset or a YAML path, got {base_name!r}")
    if path.resolve() in chain:
        raise ConfigError(f"accelerator '{path}': extends {base_name!r} loops back to this file; break the cycle")
    try:
        base, _ = _read(base_name, path.parent, (*chain, path.resolve()))
    except UnknownAcceleratorError as err:
        raise ConfigError(f"accelerator '{path}': extends {base_name!r}: {err}") from None
    return _merged(base, data), path


def load(name_or_path: str | os.PathLike) -> Accelerator:
    """A preset by name (see :func:`available`) or a YAML file path (``extends`` resolved)."""
    data, path = _read(name_or_path)
    return from_dict(data, source=str(path))
