"""PE-model registry: the ``kind`` of a YAML description names the class that models its array.

Built-in models register themselves with :func:`register_pe_model`; a third-party package adds its
own by exposing the class under the entry-point group ``pmq.pe_models`` (name = kind), e.g. in its
``pyproject.toml``::

    [project.entry-points."pmq.pe_models"]
    my_array = "my_package.model:MyArray"

Entry points are read only when a kind is not registered already, so ``import accelerators``
stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from hwsim.accelerator import PEArray
from hwsim.errors import ConfigError

ENTRY_POINT_GROUP = "pmq.pe_models"
PE_MODELS: dict[str, type[PEArray]] = {}


def register_pe_model(name: str) -> Callable[[type[PEArray]], type[PEArray]]:
    """Class decorator: make ``kind: <name>`` in a YAML description build this PE-array model."""

    def register(cls: type[PEArray]) -> type[PEArray]:
        if not (isinstance(cls, type) and issubclass(cls, PEArray)):
            raise TypeError(f"register_pe_model('{name}') needs a hwsim.PEArray subclass, got {cls!r}")
        cls.kind = name
        PE_MODELS[name] = cls
        return cls

    return register


def _load_entry_points() -> None:
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in PE_MODELS:
            register_pe_model(point.name)(point.load())


def pe_model(kind: object, source: str) -> type[PEArray]:
    """The model registered for ``kind`` (built-in or entry point); ConfigError naming the choices if none."""
    if isinstance(kind, str) and kind not in PE_MODELS:
        _load_entry_points()
    if not isinstance(kind, str) or kind not in PE_MODELS:
        raise ConfigError(f"accelerator '{source}': kind must be one of {', '.join(sorted(PE_MODELS))}, got {kind!r}")
    return PE_MODELS[kind]
