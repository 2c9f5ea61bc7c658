"""Calibration: run float forwards over sample images so activation observers learn their ranges."""

from __future__ import annotations

import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.quant.model import QuantModel
from pmq.quant.observers import DEFAULT_OBSERVER, OBSERVERS
from pmq.quant.quantizers import WeightQuantizer


def calibrate(qv: QuantModel, images: Tensor, observer: str = DEFAULT_OBSERVER, batch_size: int = 64,
              allocation: BitAllocation | None = None) -> float:
    """Fit the static activation ranges on ``images``; returns the wall time in seconds.

    Only quantizers with granularity "tensor" observe (per-token ranges are dynamic, so with every
    quantizer per token no forward runs at all). The forwards run with all components in float
    (ranges of the float model, the usual PTQ practice), so one calibration serves every bit
    allocation applied afterwards; bits-dependent observers (MSE) resolve their range per
    bit-width lazily, on first use. Afterwards the allocation in force before is restored, or
    ``allocation`` is applied and everything it needs is computed within the timed section (MSE
    activation ranges and MSE weight clipping for its bits), so the returned time is the full
    post-training calibration cost of that allocation.
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
    quantizers = [q for q in qv.activation_quantizers() if q.granularity == "tensor"]
    if quantizers:
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
        with torch.no_grad():
            for component in qv.components().values():
                if isinstance(component.quantizer_w, WeightQuantizer):
                    component.quantizer_w.prepare(component.weight)
    return time.perf_counter() - start
