"""One registry idiom for every extension point (metrics, allocation methods, observers, figures).

A :class:`Registry` is a name → entry dict with a decorator to add entries and a lookup that fails
with one line naming the choices. ``plugins`` are modules whose import registers more entries (the
sensitivity metrics register their plot styles); they are imported on the first miss only, so a
torch-free caller that finds its name never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

from pmq.errors import PMQError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Entries by name; iteration order is registration order."""

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None, plugins: Iterable[str] = ()) -> None:
        super().__init__(entries or {})
        self.kind = kind
        self.plugins = tuple(plugins)

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """``REGISTRY.register("name", entry)``, or ``@REGISTRY.register("name")`` on the entry.
        A name is registered once: a second entry under it is refused."""
        def add(value: T) -> T:
            if name in self and self[name] is not value:
                raise PMQError(f"{self.kind} {name!r} is registered already: pick another name")
            self[name] = value
            return value
        return add if entry is None else add(entry)

    def lookup(self, name: str) -> T:
        """The entry called ``name``; an unknown name is a PMQError that lists the known ones."""
        if name not in self:
            for module in self.plugins:
                importlib.import_module(module)
        if name not in self:
            raise PMQError(f"unknown {self.kind} {name!r}: use one of {', '.join(self)}")
        return self[name]
