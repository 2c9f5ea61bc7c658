"""``compute_sensitivity``: one entry point for every metric, with validation, timing and the cache."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pmq.errors import PMQError
from pmq.io import provenance
from pmq.quant import MAX_BITS, MIN_BITS, QuantModel, quantize_model
from pmq.sensitivity.cache import (
    CACHE_ENV,
    CacheWarning,
    cache_key,
    cache_path,
    default_cache_dir,
    load_cached,
)
from pmq.sensitivity.operands import PassCounter, check_images, float_eval
from pmq.sensitivity.registry import METRICS, Metric, run_metric
from pmq.sensitivity.result import Sensitivity

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)


def get_metric(name: str) -> Metric:
    return METRICS.lookup(name)


def _check_bits(bits: Iterable[int]) -> list[int]:
    try:
        chosen = sorted(set(bits))
    except TypeError:
        raise PMQError(f"bits must be a list of integers {MIN_BITS}..{MAX_BITS}, got {bits!r}") from None
    if not chosen or any(isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS
                         for b in chosen):
        raise PMQError(f"bits must be a non-empty list of integers {MIN_BITS}..{MAX_BITS}, got {list(bits)!r}")
    return chosen


def _metric_options(metric: Metric, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(metric.defaults))
    if unknown:
        known = ", ".join(metric.defaults) or "none"
        raise PMQError(f"unknown option {unknown[0]!r} for the {metric.name} metric: its options are {known}")
    return {**metric.defaults, **given}


def compute_sensitivity(qv_or_model: QuantModel | nn.Module, images: Tensor, labels: Tensor, metric: str = "pmq",
                        bits: Iterable[int] = DEFAULT_BITS, *, cache_dir: str | os.PathLike | None = None,
                        use_cache: bool = True, progress: bool = True, **metric_options: Any) -> Sensitivity:
    """Ω[component][bits] for weights and activations by ``metric`` (see ``METRICS``).

    ``qv_or_model``: a ``QuantModel`` (its quantizer settings — granularity, observers, clipping — are
    the ones priced) or a timm ViT (wrapped with ``quantize_model`` defaults). The metric runs with
    every component float, in eval mode; the model's allocation is restored afterwards.
    ``images``/``labels``: calibration images for pmq/hawq/nuclear (≤ 64 is the design point),
    held-out images for ``measured``. Results are cached under ``cache_dir`` (default
    ``$PMQ_CACHE_DIR`` or ``~/.cache/pmq/sensitivity``) by a content hash of everything they depend
    on; ``use_cache=False`` neither reads nor writes the cache.
    """
    spec = get_metric(metric)
    chosen_bits = _check_bits(bits)
    options = _metric_options(spec, metric_options)
    qv = qv_or_model if isinstance(qv_or_model, QuantModel) else quantize_model(qv_or_model)
    check_images(images, labels)
    device = next(qv.parameters()).device
    images, labels = images.to(device), labels.to(device)

    key, path = "", None
    if use_cache:
        key = cache_key(qv, images, labels, spec.name, spec.version, chosen_bits, options)
        path = cache_path(Path(cache_dir) if cache_dir is not None else default_cache_dir(), spec.name, key)
        cached = load_cached(path, key)
        if cached is not None:
            return cached

    counter = PassCounter(images=len(images))
    with float_eval(qv), torch.enable_grad():
        start, start_cpu = time.perf_counter(), time.process_time()
        output = run_metric(spec, qv, images, labels, chosen_bits, counter, progress, options)
        if device.type == "cuda":  # kernels run asynchronously: time them to completion
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    result = Sensitivity(
        metric=spec.name, weights=output.weights, activations=output.activations, wall_time_s=wall, cpu_time_s=cpu,
        forward_passes=counter.forward, backward_passes=counter.backward, options=options,
        details=output.details, cache_key=key,
        provenance=provenance(metric_version=spec.version, device=str(device)),
    )
    _check_finite(result)
    if path is not None:
        _store(result, path)
    return result


def _store(result: Sensitivity, path: Path) -> None:
    """Cache the result if the cache folder is writable; the cache only saves time, so a failure is a
    one-line warning, not an error (a read-only or missing ``$HOME``, a full disk)."""
    try:
        result.save(path)
    except OSError as exc:
        warnings.warn(f"sensitivity cache not written ({exc.strerror}: {path.parent}); results are "
                      f"unchanged, only not reused: set ${CACHE_ENV} to a writable folder", CacheWarning,
                      stacklevel=3)


def _check_finite(result: Sensitivity) -> None:
    for table, what in ((result.weights, "weight"), (result.activations, "activation")):
        for name, row in table.items():
            for b, value in row.items():
                if not (value >= 0 and value < float("inf")):
                    raise PMQError(f"the {result.metric} metric gave {what} sensitivity {value} for {name} at "
                                   f"{b} bits: the model's loss is not finite on these images; check the inputs")
