"""The one budget grammar of every search (``pmq search``, patch-wise, sweeps, the demo, benchmarks).

    2.5e9        an absolute cost, in the objective's base units (bytes, BOPs, s, pJ)
    0.5x:W8A8    a multiple of the uniform W8A8 allocation's cost
    0.8x         a multiple of the base allocation's cost (only where there is one: patch-wise)

Parsing is syntax only; :meth:`Budget.resolve` prices the reference (uniform setting or base), so
a budget can be checked before any model is loaded and resolved once per cost table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from pmq.errors import PMQError

_FORM = re.compile(r"^\s*(?P<factor>[^\sxX:]+)\s*[xX]\s*(?::\s*(?P<setting>\S+))?\s*$")
FORMS = ("give an absolute cost (e.g. 2.5e9), a multiple of a uniform setting (e.g. 0.5x:W8A8) or, "
         "patch-wise, of the base allocation (e.g. 0.8x)")


@dataclass(frozen=True)
class Budget:
    """A parsed budget: ``value`` (absolute), or ``factor`` × the cost of ``setting`` (None: the base)."""

    text: str
    value: float | None = None
    factor: float | None = None
    setting: str | None = None

    @classmethod
    def parse(cls, budget: str | float | Budget) -> Budget:
        if isinstance(budget, Budget):
            return budget
        if isinstance(budget, (int, float)) and not isinstance(budget, bool):
            return cls(repr(float(budget)), value=_finite(str(budget), str(budget)))
        text = str(budget)
        relative = _FORM.match(text)
        if relative:
            factor = _finite(relative["factor"], text)
            if factor <= 0:
                raise PMQError(f"budget {text!r} has factor {relative['factor']}: the factor must be > 0")
            return cls(text, factor=factor, setting=relative["setting"])
        value = _finite(text, text)
        if value < 0:
            raise PMQError(f"budget {text!r} is negative: {FORMS}")
        return cls(text, value=value)

    @property
    def of_setting(self) -> float | None:
        """The factor of a ``0.4x:W8A8`` budget (None for absolute and base-relative ones)."""
        return self.factor if self.setting is not None else None

    def resolve(self, cost_of_uniform: Callable[[str], float], base: float | None = None) -> float:
        """The budget in base units; ``cost_of_uniform("W8A8")`` prices a uniform setting, ``base``
        is the cost ``0.8x`` is a multiple of (None: this search has no base allocation)."""
        if self.value is not None:
            return self.value
        assert self.factor is not None
        if self.setting is None:
            if base is None:
                raise PMQError(f"budget {self.text!r} is a multiple of a base allocation, which this search "
                               f"does not have: name a uniform setting (e.g. {self.factor:g}x:W8A8)")
            return self.factor * base
        try:
            reference = float(cost_of_uniform(self.setting))
        except KeyError:
            raise PMQError(f"budget {self.text!r} names an unknown uniform setting {self.setting!r}: {FORMS}") from None
        return self.factor * reference


def _finite(word: str, text: str) -> float:
    try:
        value = float(word)
    except ValueError:
        raise PMQError(f"budget {text!r} is not understood: {FORMS}") from None
    if not math.isfinite(value):
        raise PMQError(f"budget {text!r} is not finite: {FORMS}")
    return value
