"""Metrics by name: each is a function from (model, images, bits) to Ω tables, with its options and
the style its allocations are shown with (registered as an allocation method, :mod:`pmq.methods`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from pmq.methods import METHODS, MethodStyle
from pmq.quant import QuantModel
from pmq.registry import Registry
from pmq.sensitivity.operands import PassCounter
from pmq.sensitivity.result import Table


@dataclass
class MetricOutput:
    """What a metric computes; ``compute_sensitivity`` adds timing, passes, options and provenance."""

    weights: Table
    activations: Table
    details: dict[str, Any] = field(default_factory=dict)


MetricFn = Callable[..., MetricOutput]
"""``fn(qv, images, labels, bits, counter, progress, **options) -> MetricOutput``; ``qv`` is in
float eval mode for the call, ``counter`` counts the passes it runs."""


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``version`` is part of the cache key (bump it when the numbers change)."""

    name: str
    fn: MetricFn
    defaults: dict[str, Any]
    version: int
    summary: str
    style: MethodStyle


METRICS: Registry[Metric] = Registry("sensitivity metric")


def register_metric(name: str, defaults: dict[str, Any], version: int, summary: str,
                    style: MethodStyle) -> Callable[[MetricFn], MetricFn]:
    """Decorator: ``@register_metric("pmq", {"batch_size": 16}, 1, "…", MethodStyle(...))`` on the
    metric function; its allocations are then a method the results writer and the figures know."""
    def decorate(fn: MetricFn) -> MetricFn:
        METRICS.register(name, Metric(name, fn, dict(defaults), version, summary, style))
        METHODS.register(name, style)
        return fn
    return decorate


def run_metric(metric: Metric, qv: QuantModel, images: Tensor, labels: Tensor, bits: list[int],
               counter: PassCounter, progress: bool, options: dict[str, Any]) -> MetricOutput:
    return metric.fn(qv, images, labels, bits, counter, progress, **options)
