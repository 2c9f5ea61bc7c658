"""Calibration: run float forwards over sample images so activation observers learn their ranges."""

from __future__ import annotations

import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.quant.observers import OBSERVERS
from pmq.quant.vit import QuantViT


def calibrate(qv: QuantViT, images: Tensor, observer: str = "minmax", batch_size: int = 64,
              allocation: BitAllocation | None = None) -> float:
    """Fit every activation quantizer's observer on ``images``; returns the wall time in seconds.

    The forwards run with all components in float (ranges of the float model, the usual PTQ
    practice), so one calibration serves every bit allocation applied afterwards; bits-dependent
    observers (MSE) resolve their range per bit-width lazily, on first use. Afterwards the
    allocation in force before is restored, or ``allocation`` is applied and its ranges resolved
    within the timed section (so the returned time is the full calibration cost for it).
    Per-token quantizers ignore the observers (their ranges are dynamic): calibration only matters
    for granularity "tensor".
    """
    if observer not in OBSERVERS:
        raise PMQError(f"unknown observer {observer!r}: use one of {', '.join(OBSERVERS)}")
    if images.dim() != 4 or len(images) == 0:
        raise PMQError(f"calibration images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if batch_size <= 0:
        raise PMQError(f"batch_size must be positive, got {batch_size}")
    if allocation is not None:
        allocation.validate(qv.component_names())
    start = time.perf_counter()
    restore = qv.allocation
    quantizers = list(qv.activation_quantizers())
    qv.apply(BitAllocation.uniform("float", qv.component_names()))
    for quantizer in quantizers:
        quantizer.start_observing(observer)
    batches = images.split(batch_size)
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc=f"calibrate ({observer})", unit="batch", disable=len(batches) <= 1):
                qv(batch)
    finally:
        for quantizer in quantizers:
            quantizer.stop_observing()
        qv.apply(restore)
    if allocation is not None:
        qv.apply(allocation)
        for quantizer in quantizers:
            quantizer.resolve_ranges()
    return time.perf_counter() - start
