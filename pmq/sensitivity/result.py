"""The result of a sensitivity metric: Ω per component, per operand, per bit-width.

JSON form (``Sensitivity.save``)::

    {"format": "pmq.sensitivity/1", "metric": "pmq", "bits": [2, ..., 8],
     "weights":     {"blocks.0.attn.qkv": {"2": 0.31, "3": 0.07, ...}, ...},
     "activations": {...},
     "wall_time_s": 0.8, "cpu_time_s": 1.5, "forward_passes": 1.0, "backward_passes": 1.0,
     "options": {...}, "details": {...}, "cache_key": "…", "provenance": {...}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmq.allocation import Bits
from pmq.errors import PMQError
from pmq.io import write_json

FORMAT = "pmq.sensitivity/1"

Table = dict[str, dict[int, float]]
"""component → bits → Ω."""


@dataclass
class Sensitivity:
    """Ω[component][bits] for each operand of each component, and what it cost to get them.

    ``weights`` holds the second GEMM operand (the weight of a Linear/Conv, k or v of an attention
    matmul), ``activations`` the first (the input activation, q or the attention map): the same
    convention as ``Bits(w, a)``, so ``omega(name, Bits(w, a)) = weights[name][w] + activations[name][a]``.
    Passes are counted in sweeps over the image set (a forward over all images in 4 chunks is 1).
    ``cpu_time_s`` is the process CPU time of the computation (all threads): on a shared machine it
    is the steadier measure of work, ``wall_time_s`` what a user waits.
    """

    metric: str
    weights: Table
    activations: Table
    wall_time_s: float
    cpu_time_s: float
    forward_passes: float
    backward_passes: float
    options: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    @property
    def bits(self) -> list[int]:
        first = next(iter(self.weights.values()), {})
        return sorted(first)

    def component_names(self) -> list[str]:
        return list(self.weights)

    def omega(self, component: str, bits: Bits) -> float:
        """Ω_w[bits.w] + Ω_a[bits.a]; a float operand (``None``) contributes 0."""
        if component not in self.weights:
            raise PMQError(f"no sensitivity for component {component!r}: it was computed for "
                           f"{len(self.weights)} components of another model")
        return self._term(self.weights, component, bits.w, "weight") + \
            self._term(self.activations, component, bits.a, "activation")

    def _term(self, table: Table, component: str, bits: int | None, what: str) -> float:
        if bits is None:
            return 0.0
        row = table[component]
        if bits not in row:
            raise PMQError(f"{what} bits {bits} of {component!r} were not among the computed candidates "
                           f"{sorted(row)}: recompute the sensitivity with bits including {bits}")
        return row[bits]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "metric": self.metric,
            "bits": self.bits,
            "weights": _table_to_json(self.weights),
            "activations": _table_to_json(self.activations),
            "wall_time_s": self.wall_time_s,
            "cpu_time_s": self.cpu_time_s,
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "options": self.options,
            "details": self.details,
            "cache_key": self.cache_key,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "sensitivity") -> Sensitivity:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PMQError(f"{source} is not a sensitivity result (expected format {FORMAT!r}): "
                           "write it with Sensitivity.save")
        try:
            return cls(
                metric=str(data["metric"]),
                weights=_table_from_json(data["weights"]),
                activations=_table_from_json(data["activations"]),
                wall_time_s=float(data["wall_time_s"]),
                cpu_time_s=float(data["cpu_time_s"]),
                forward_passes=float(data["forward_passes"]),
                backward_passes=float(data["backward_passes"]),
                options=dict(data.get("options", {})),
                details=dict(data.get("details", {})),
                cache_key=str(data.get("cache_key", "")),
                provenance=dict(data.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PMQError(f"{source} is a damaged sensitivity result ({type(exc).__name__}: {exc}): "
                           "delete it and recompute") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "sensitivity JSON") -> Sensitivity:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PMQError(f"{source} is not valid JSON ({exc}): delete it and recompute") from None
        return cls.from_dict(data, source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as JSON."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sensitivity:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise PMQError(f"sensitivity file {path} not found: check the path") from None
        return cls.from_json(text, source=f"sensitivity file {path}")


def _table_to_json(table: Table) -> dict[str, dict[str, float]]:
    return {name: {str(b): float(v) for b, v in row.items()} for name, row in table.items()}


def _table_from_json(data: Mapping[str, Mapping[str, float]]) -> Table:
    table = {name: {int(b): float(v) for b, v in row.items()} for name, row in data.items()}
    for name, row in table.items():
        if not all(math.isfinite(v) for v in row.values()):
            raise ValueError(f"non-finite value for {name}")
    return table


def sensitivity_table(sens: Sensitivity, component_names: Iterable[str],
                      choices: Iterable[Bits]) -> dict[str, dict[Bits, float]]:
    """component → choice → Ω, for the Pareto search (``pmq.pareto``): every component, every choice.

    Components must all have been measured; each choice's bits must be among the computed
    candidates (float operands contribute 0).
    """
    choices = list(choices)
    if not choices:
        raise PMQError("no bit choices given: pass a list of Bits, e.g. [Bits(4, 8), Bits(8, 8)]")
    return {name: {bits: sens.omega(name, bits) for bits in choices} for name in component_names}
