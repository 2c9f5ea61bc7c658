"""A small declarative validator for accelerator descriptions: every key checked, paths in errors.

A schema is a ``dict`` (fixed keys, all required unless wrapped in :class:`Optional`), a
:class:`MapOf` (free keys, one value schema), a :class:`ListOf` (a non-empty list), an
:class:`Either` (the first of two schemas that accepts the value) or a leaf check (:class:`Number`,
:class:`Choice`, :class:`Text`). ``validate`` returns a plain, cleaned copy of the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hwsim.errors import ConfigError

MAX_NUMBER = 1e15
"""No hardware quantity in a description is larger (clock in Hz, buffer bytes...): a bigger value
(``.inf``, 1e300) is a typo that would only make every later number meaningless."""


@dataclass(frozen=True)
class Number:
    """An int (``integer=True``) or float; ``minimum`` is exclusive when ``strict``; every number is
    finite and at most ``maximum`` (default :data:`MAX_NUMBER`)."""

    integer: bool = False
    minimum: float = 0.0
    strict: bool = True
    maximum: float | None = None


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Text:
    pass


@dataclass(frozen=True)
class MapOf:
    """A mapping with free keys (restricted to ``keys`` when given), each value checked by ``value``."""

    value: Any
    keys: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ListOf:
    """A list (non-empty unless ``empty``), each item checked by ``item``."""

    item: Any
    empty: bool = False


@dataclass(frozen=True)
class Either:
    """A value accepted by ``first`` or, failing that, by ``second`` (the error names both)."""

    first: Any
    second: Any


@dataclass(frozen=True)
class Optional:
    """A key that may be left out (or set to null): it then takes ``default``."""

    schema: Any
    default: Any = None


POSITIVE_INT = Number(integer=True)
ARRAY_DIM = Number(integer=True, maximum=4096)
"""Rows, columns, tiles, lanes of a PE array. Assumption: 16x the largest real array we model
(TPU v1's 256x256), so a description of 10^12 PEs is refused instead of simulated."""
POSITIVE = Number()
NON_NEGATIVE = Number(strict=False)


def _fail(source: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"accelerator '{source}': {path} {message}")


def _reason(err: ConfigError, where: str) -> str:
    """The part of a validation message after the key path."""
    return str(err).split(f" {where} ", 1)[-1]


def validate(schema: Any, data: Any, source: str, path: str = "") -> Any:
    """Check ``data`` against ``schema``; raise ConfigError naming ``source`` and the key path."""
    where = path or "the document"
    if isinstance(schema, dict):
        if not isinstance(data, dict):
            raise _fail(source, where, f"must be a mapping, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in schema)
        if unknown:
            key_path = f"{path}.{unknown[0]}" if path else unknown[0]
            raise _fail(source, key_path, f"is not a known key; allowed here: {', '.join(schema)}")
        cleaned = {}
        for key, sub in schema.items():
            key_path = f"{path}.{key}" if path else key
            if key not in data or (data[key] is None and isinstance(sub, Optional)):
                if isinstance(sub, Optional):  # absent or null (``area:`` with nothing) = the default
                    cleaned[key] = sub.default
                    continue
                raise _fail(source, key_path, "is missing; add it")
            inner = sub.schema if isinstance(sub, Optional) else sub
            cleaned[key] = validate(inner, data[key], source, key_path)
        return cleaned
    if isinstance(schema, MapOf):
        if not isinstance(data, dict):
            raise _fail(source, where, f"must be a mapping, got {type(data).__name__}")
        cleaned = {}
        for key, value in data.items():
            key_path = f"{path}.{key}" if path else str(key)
            if schema.keys is not None and key not in schema.keys:
                raise _fail(source, key_path, f"is not a known key; allowed here: {', '.join(schema.keys)}")
            cleaned[str(key)] = validate(schema.value, value, source, key_path)
        return cleaned
    if isinstance(schema, ListOf):
        if not isinstance(data, list) or not (data or schema.empty):
            kind = "a list" if schema.empty else "a non-empty list"
            raise _fail(source, where, f"must be {kind}, got {data!r}")
        return [validate(schema.item, item, source, f"{path}[{i}]") for i, item in enumerate(data)]
    if isinstance(schema, Either):
        try:
            return validate(schema.first, data, source, path)
        except ConfigError as first:
            try:
                return validate(schema.second, data, source, path)
            except ConfigError as second:
                raise _fail(source, where, f"{_reason(first, where)}, or {_reason(second, where)}") from None
    if isinstance(schema, Number):
        ok_type = isinstance(data, int) if schema.integer else isinstance(data, int | float)
        if isinstance(data, bool) or not ok_type:
            kind = "an integer" if schema.integer else "a number"
            raise _fail(source, where, f"must be {kind}, got {data!r}")
        if not math.isfinite(data):
            raise _fail(source, where, f"must be a finite number, got {data!r}")
        if schema.strict and not data > schema.minimum:
            raise _fail(source, where, f"must be > {schema.minimum:g}, got {data!r}")
        if not schema.strict and not data >= schema.minimum:
            raise _fail(source, where, f"must be >= {schema.minimum:g}, got {data!r}")
        maximum = MAX_NUMBER if schema.maximum is None else schema.maximum
        if data > maximum:
            raise _fail(source, where, f"must be <= {maximum:g}, got {data!r}")
        return data
    if isinstance(schema, Choice):
        if data not in schema.options:
            raise _fail(source, where, f"must be one of {', '.join(schema.options)}, got {data!r}")
        return data
    if isinstance(schema, Text):
        if not isinstance(data, str) or not data.strip():
            raise _fail(source, where, f"must be a non-empty string, got {data!r}")
        return data
    raise TypeError(f"unsupported schema node {schema!r}")
