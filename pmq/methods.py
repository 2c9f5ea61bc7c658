"""Allocation methods by name, with how they look in tables and figures (torch- and matplotlib-free).

``uniform`` and ``patchwise`` are registered here; every sensitivity metric registers itself with
its style (``pmq.sensitivity.register_metric``), so a new metric needs no edit to the results
writer, the report or the plot modules. A results folder records the styles of the methods it holds
(``run.json`` → ``methods``), so figures are drawn from the folder alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pmq.registry import Registry

# Okabe & Ito (2008), ordered for contrast on white; yellow last (weak on white)
OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73", "orange": "#E69F00",
    "sky": "#56B4E9", "purple": "#CC79A7", "black": "#000000", "yellow": "#F0E442",
}


@dataclass(frozen=True)
class MethodStyle:
    """Legend label, short label (bar-chart ticks), colour, marker, line style (speedup curves);
    ``order`` sorts the series of a figure."""

    label: str
    short: str
    color: str
    marker: str
    order: int
    linestyle: str = "-."

    @property
    def plot_kwargs(self) -> dict[str, str]:
        """``color``, ``marker`` and ``label`` for matplotlib."""
        return {"color": self.color, "marker": self.marker, "label": self.label}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


METHODS: Registry[MethodStyle] = Registry("allocation method", plugins=("pmq.sensitivity",))
METHODS.register("uniform", MethodStyle("uniform", "uniform", OKABE_ITO["black"], "s", order=0))
METHODS.register("patchwise", MethodStyle("PMQ + patch-wise", "PMQ+pw", OKABE_ITO["green"], "D", order=100))


def method_style(name: str, recorded: dict[str, Any] | None = None) -> MethodStyle:
    """The style of ``name``: as recorded in a results folder if given, else the registered one."""
    if recorded and name in recorded:
        return MethodStyle(**recorded[name])
    return METHODS.lookup(name)
