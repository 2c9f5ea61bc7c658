"""Bit allocations: which (weight, activation) bit-widths each component of a ViT runs at.

JSON form (``BitAllocation.save``)::

    {"format": "pmq.bit_allocation/1",
     "components": {"blocks.0.attn.qkv": {"w": 4, "a": 8}, ...},   # null = float
     "patchwise": {...},                                           # per-layer token settings (pmq.patchwise.spec)
     "metadata": {...}}                                            # free-form (provenance, budget, ...)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmq.errors import PMQError
from pmq.io import write_json
from pmq.patchwise.spec import validate_patchwise  # the patch-wise schema lives with its module

MIN_BITS, MAX_BITS = 2, 8
FORMAT = "pmq.bit_allocation/1"
_SETTING = re.compile(r"^W(\d+)A(\d+)$", re.IGNORECASE)
_SETTING_FORM = f"W<w>A<a> with bits {MIN_BITS}..{MAX_BITS} (e.g. W4A8) or 'float'"


def _check(bits: Any, what: str) -> None:
    if bits is None:
        return
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise PMQError(f"{what} {bits!r} is not an integer: use {MIN_BITS}..{MAX_BITS} or null for float")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise PMQError(f"{what} {bits} outside the supported {MIN_BITS}..{MAX_BITS} (null = float)")


@dataclass(frozen=True)
class Bits:
    """Bit-widths of one component: ``w`` for weights (or the 2nd matmul operand), ``a`` for the
    input activation (or the 1st matmul operand); ``None`` = float."""

    w: int | None
    a: int | None

    def __post_init__(self) -> None:
        _check(self.w, "weight bits")
        _check(self.a, "activation bits")

    @classmethod
    def parse(cls, text: str) -> Bits:
        """``"W4A8"`` → Bits(4, 8); ``"float"`` → Bits(None, None)."""
        if text.strip().lower() == "float":
            return cls(None, None)
        match = _SETTING.match(text.strip())
        if not match:
            raise PMQError(f"bad bit setting {text!r}: use {_SETTING_FORM}")
        w, a = int(match[1]), int(match[2])
        for bits, what in ((w, "weight"), (a, "activation")):
            if not MIN_BITS <= bits <= MAX_BITS:
                raise PMQError(f"bad bit setting {text!r}: {what} bits {bits} outside {MIN_BITS}..{MAX_BITS}; "
                               f"use {_SETTING_FORM}")
        return cls(w, a)

    def __str__(self) -> str:
        if self.w is None and self.a is None:
            return "float"
        return f"W{self.w if self.w is not None else 'f'}A{self.a if self.a is not None else 'f'}"


FLOAT = Bits(None, None)


@dataclass
class BitAllocation:
    """Component name → :class:`Bits`, in the model's component order.

    ``patchwise`` holds the per-layer patch-wise (token-group) activation settings, in the JSON form
    of :mod:`pmq.patchwise.spec` (``{}`` = none); it is serialised as given and checked by
    :meth:`validate`. ``metadata`` is free-form and saved alongside.
    """

    bits: dict[str, Bits]
    patchwise: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def uniform(cls, setting: str | Bits, component_names: Iterable[str]) -> BitAllocation:
        """Every component at the same setting, e.g. ``uniform("W4A8", qv.component_names())``."""
        bits = Bits.parse(setting) if isinstance(setting, str) else setting
        return cls({name: bits for name in component_names})

    def __getitem__(self, name: str) -> Bits:
        return self.bits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.bits)

    def __len__(self) -> int:
        return len(self.bits)

    def items(self) -> Iterable[tuple[str, Bits]]:
        return self.bits.items()

    def replace(self, changes: Mapping[str, Bits]) -> BitAllocation:
        """A copy with some components' bits changed (names must exist)."""
        unknown = [name for name in changes if name not in self.bits]
        if unknown:
            raise PMQError(f"unknown component {unknown[0]!r}: it is not part of this allocation")
        return BitAllocation({**self.bits, **changes}, dict(self.patchwise), dict(self.metadata))

    def validate(self, component_names: Iterable[str]) -> BitAllocation:
        """Check against a model's components: no unknown, none missing, bits in range, patch-wise
        settings well-formed and naming the model's layers. Returns self."""
        names = list(component_names)
        known = set(names)
        for name, bits in self.bits.items():
            if name not in known:
                raise PMQError(f"allocation names unknown component {name!r}: the model's components are "
                               f"{names[0]} … {names[-1]} ({len(names)} in all)")
            if not isinstance(bits, Bits):
                raise PMQError(f"component {name!r}: bits must be a Bits(w, a), got {bits!r}")
            try:
                Bits(bits.w, bits.a)
            except PMQError as exc:
                raise PMQError(f"component {name!r}: {exc}") from None
        missing = [name for name in names if name not in self.bits]
        if missing:
            raise PMQError(f"allocation lacks component {missing[0]!r} ({len(missing)} missing): give every "
                           "component bits (null for float)")
        validate_patchwise(self.patchwise, names)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "components": {name: {"w": b.w, "a": b.a} for name, b in self.bits.items()},
            "patchwise": self.patchwise,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "allocation") -> BitAllocation:
        if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
            raise PMQError(f"{source} is not a bit allocation: expected an object with a 'components' "
                           "mapping of name -> {\"w\": bits, \"a\": bits}")
        bits = {}
        for name, entry in data["components"].items():
            if not isinstance(entry, dict) or set(entry) != {"w", "a"}:
                raise PMQError(f"{source}: component {name!r} must map to {{\"w\": bits, \"a\": bits}}, got {entry!r}")
            try:
                bits[name] = Bits(entry["w"], entry["a"])
            except PMQError as exc:
                raise PMQError(f"{source}: component {name!r}: {exc}") from None
        patchwise, metadata = data.get("patchwise", {}), data.get("metadata", {})
        if not isinstance(patchwise, dict) or not isinstance(metadata, dict):
            raise PMQError(f"{source}: 'patchwise' and 'metadata' must be JSON objects")
        return cls(bits, patchwise, metadata)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as JSON (see the module docstring for the format)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> BitAllocation:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PMQError(f"allocation file {path} not found: check the path") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PMQError(f"allocation file {path} is not valid JSON ({exc}): write it with "
                           "BitAllocation.save or fix the syntax") from None
        return cls.from_dict(data, source=f"allocation file {path}")
