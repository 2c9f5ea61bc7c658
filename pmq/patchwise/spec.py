"""The patch-wise settings a :class:`~pmq.allocation.BitAllocation` carries, validated (torch-free).

JSON form (``BitAllocation.patchwise``)::

    {"levels": [8, 4],                          # default token bit levels, highest first (2..8)
     "score": "cls_attention",                  # token importance (see pmq.patchwise.runtime.SCORES)
     "apply_to": ["q", "k", "v", "attn"],       # which token-row operands get the token bits
     "seed": 0,                                 # only for score "random"
     "layers": {"blocks.3": {"rho": 0.5},       # top 50% of patch tokens keep the high level
                "blocks.4": {"rho": [0.25, 0.5], "levels": [8, 4, 2]}}}

``rho`` is cumulative: with levels ``[l0, l1, l2]`` and ``rho [r0, r1]`` the top ``r0`` of a layer's
patch tokens run at ``l0``, the next ones up to ``r1`` at ``l1``, the rest at ``l2``; a group holds
``ceil(r · P)`` of the P patch tokens. Prefix tokens (the class token) always join the top group.
Each operand runs a group at ``min(level, the allocation's bits)``: patch-wise only ever lowers
bits, so ``rho = 1`` (or levels that never go below the allocation) is the plain allocation
exactly. Float operands stay float. Layers not listed are plain.

Operands (``apply_to``): ``q``, ``k`` (rows of q·kᵀ's two inputs), ``attn`` (attention-probability
rows, attn·v's first input), ``v`` (attn·v's second input, grouped along the reduction), and the
token rows of the inputs of ``qkv``, ``proj``, ``fc1``, ``fc2``. ``qkv`` precedes the layer's own
attention, so its rows are ranked by the previous block's score (the first block's qkv stays plain).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pmq.errors import PMQError

MIN_BITS, MAX_BITS = 2, 8
OPERANDS = {
    "q": ("attn.matmul_qk", "a"),
    "k": ("attn.matmul_qk", "w"),
    "attn": ("attn.matmul_av", "a"),
    "v": ("attn.matmul_av", "w"),
    "qkv": ("attn.qkv", "a"),
    "proj": ("attn.proj", "a"),
    "fc1": ("mlp.fc1", "a"),
    "fc2": ("mlp.fc2", "a"),
}
"""Operand name → (component path inside a block, which of its operands: ``a`` first, ``w`` second)."""
DEFAULT_APPLY_TO = ("q", "k", "v", "attn")
DEFAULT_LEVELS = (8, 4)
SCORE_NAMES = ("cls_attention", "value_norm", "random")
_KEYS = ("levels", "score", "apply_to", "seed", "layers")
_LAYER_KEYS = ("rho", "levels")
_LAYER = re.compile(r"^(blocks\.\d+)\.attn\.matmul_qk$")
_EXAMPLE = '{"levels": [8, 4], "layers": {"blocks.3": {"rho": 0.5}}}'
_ROUNDING = 1e-9  # ρ·P within this of an integer counts as that integer (0.3 · 10 = 3.0000000000000004)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_levels(levels: Any, where: str) -> tuple[int, ...]:
    if (not isinstance(levels, list | tuple) or len(levels) < 2 or not all(_is_int(b) for b in levels)
            or not all(MIN_BITS <= b <= MAX_BITS for b in levels)
            or any(hi <= lo for hi, lo in zip(levels, levels[1:], strict=False))):
        raise PMQError(f"{where}: levels {levels!r} must be two or more integer bit-widths in {MIN_BITS}..{MAX_BITS}, "
                       "highest first, e.g. [8, 4] or [6, 4, 2]")
    return tuple(levels)


def check_rho(rho: Any, levels: tuple[int, ...], where: str) -> tuple[float, ...]:
    """ρ as a tuple of ``len(levels) - 1`` cumulative fractions, each in (0, 1], non-decreasing."""
    values = [rho] if not isinstance(rho, list | tuple) else list(rho)
    if len(values) != len(levels) - 1:
        raise PMQError(f"{where}: rho {rho!r} needs {len(levels) - 1} cumulative fraction(s) for levels "
                       f"{list(levels)}, e.g. {[round((i + 1) / len(levels), 2) for i in range(len(levels) - 1)]}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise PMQError(f"{where}: rho {value!r} is outside (0, 1]: give the fraction of patch tokens that keep "
                           "the high bits, e.g. 0.5 (1 = no reallocation)")
    if any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise PMQError(f"{where}: rho {values} must be non-decreasing (cumulative fractions, top level first)")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class LayerSetting:
    """One layer's token reallocation: cumulative fractions ``rho`` over ``levels`` (highest first)."""

    rho: tuple[float, ...]
    levels: tuple[int, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", check_levels(self.levels, "patch-wise setting"))
        object.__setattr__(self, "rho", check_rho(self.rho, self.levels, "patch-wise setting"))

    def group_sizes(self, patches: int) -> tuple[int, ...]:
        """Patch tokens per level (prefix tokens come on top of the first): ``ceil(ρ·P)`` cumulatively."""
        bounds = [min(patches, math.ceil(r * patches - _ROUNDING)) for r in self.rho] + [patches]
        return tuple(hi - lo for lo, hi in zip([0, *bounds[:-1]], bounds, strict=True))

    def operand_levels(self, base: int | None) -> tuple[int, ...] | None:
        """The bits each group runs an operand at, ``min(level, base)``; ``None`` for a float operand."""
        return None if base is None else tuple(min(level, base) for level in self.levels)

    def changes(self, base: int | None, patches: int) -> bool:
        """Whether any token of an operand allocated ``base`` bits runs at other bits."""
        bits = self.operand_levels(base)
        return bits is not None and any(size and b != base for size, b in zip(self.group_sizes(patches), bits,
                                                                             strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"rho": self.rho[0] if len(self.rho) == 1 else list(self.rho), "levels": list(self.levels)}

    @property
    def key(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """A hashable (ρ, levels) key, e.g. for Pareto choices."""
        return self.rho, self.levels

    def __str__(self) -> str:
        rho = "/".join(f"{r:g}" for r in self.rho)
        return f"rho={rho}@{'/'.join(map(str, self.levels))}"


@dataclass(frozen=True)
class PatchwiseSpec:
    """Validated patch-wise settings: per-layer :class:`LayerSetting` plus score and operands."""

    layers: dict[str, LayerSetting] = field(default_factory=dict)
    score: str = "cls_attention"
    apply_to: tuple[str, ...] = DEFAULT_APPLY_TO
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Any, layer_names: Iterable[str] | None = None) -> PatchwiseSpec:
        """Parse and check the JSON form; ``layer_names`` (``blocks.i``) restricts the layers it may name."""
        if not isinstance(data, Mapping):
            raise PMQError(f"patchwise must be a JSON object such as {_EXAMPLE}, got {type(data).__name__}")
        unknown = [key for key in data if key not in _KEYS]
        if unknown:
            raise PMQError(f"patchwise has unknown key {unknown[0]!r}: use {', '.join(_KEYS)}")
        levels = check_levels(data.get("levels", list(DEFAULT_LEVELS)), "patchwise")
        score = data.get("score", "cls_attention")
        if score not in SCORE_NAMES:
            raise PMQError(f"patchwise score {score!r} is unknown: use one of {', '.join(SCORE_NAMES)}")
        apply_to = data.get("apply_to", list(DEFAULT_APPLY_TO))
        if (not isinstance(apply_to, list | tuple) or not apply_to
                or any(not isinstance(o, str) or o not in OPERANDS for o in apply_to)):
            raise PMQError(f"patchwise apply_to {apply_to!r} must be a non-empty list of {', '.join(OPERANDS)}")
        seed = data.get("seed", 0)
        if not _is_int(seed):
            raise PMQError(f"patchwise seed {seed!r} must be an integer")
        layers_data = data.get("layers", {})
        if not isinstance(layers_data, Mapping):
            raise PMQError(f"patchwise layers must map a layer name to its setting, e.g. {_EXAMPLE}")
        known = list(layer_names) if layer_names is not None else None
        layers = {}
        for name, entry in layers_data.items():
            where = f"patchwise layer {name!r}"
            if known is not None and name not in known:
                span = f"{known[0]} … {known[-1]}" if known else "none"
                raise PMQError(f"patchwise names unknown layer {name!r}: this model's layers are {span}")
            if not isinstance(entry, Mapping) or "rho" not in entry or any(k not in _LAYER_KEYS for k in entry):
                raise PMQError(f"{where} must be an object {{\"rho\": fraction}} (optionally \"levels\"), got {entry!r}")
            layer_levels = check_levels(entry["levels"], where) if "levels" in entry else levels
            layers[name] = LayerSetting(check_rho(entry["rho"], layer_levels, where), layer_levels)
        return cls(layers, score, tuple(dict.fromkeys(apply_to)), seed)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "apply_to": list(self.apply_to), "seed": self.seed,
                "layers": {name: setting.to_dict() for name, setting in self.layers.items()}}


def allocated_bits(bits: Mapping[str, Any], layer: str, operand: str) -> int | None:
    """The bits ``operand`` of ``layer`` is allocated: the ``a`` or ``w`` of its component's ``Bits``."""
    component, which = OPERANDS[operand]
    allocated = bits[f"{layer}.{component}"]
    return allocated.a if which == "a" else allocated.w


def layer_names(component_names: Iterable[str]) -> list[str]:
    """The patch-wise layers (``blocks.i``) of a model, from its component names."""
    return [m[1] for name in component_names if (m := _LAYER.match(name))]


def validate_patchwise(data: Mapping[str, Any], component_names: Iterable[str]) -> PatchwiseSpec | None:
    """Check a ``BitAllocation.patchwise`` against a model; ``None`` when it is empty (no patch-wise)."""
    if isinstance(data, Mapping) and not data:
        return None
    return PatchwiseSpec.from_dict(data, layer_names(component_names))
