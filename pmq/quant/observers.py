"""Range observers for static (per-tensor) activation quantization, and MSE clipping for weights.

An observer sees the float activations of the calibration batches and then answers
``range(bits) -> (lo, hi)``. Ranges may depend on the bit-width (MSE search clips harder at low
bits), which is why observers keep statistics rather than a fixed range: one calibration serves
every allocation the search later tries.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pmq.quant.functional import fake_quant_affine, fake_quant_symmetric
from pmq.registry import Registry


class Observer:
    """Base: tracks the exact min / max over all calibration batches."""

    def __init__(self) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.batches = 0

    @property
    def ready(self) -> bool:
        return self.batches > 0

    def update(self, x: Tensor) -> None:
        lo, hi = torch.aminmax(x)
        self.min = min(self.min, float(lo))
        self.max = max(self.max, float(hi))
        self.batches += 1

    def range(self, bits: int) -> tuple[float, float]:
        raise NotImplementedError


class MinMaxObserver(Observer):
    """The full observed range: no clipping error, but one outlier stretches the grid for all."""

    def range(self, bits: int) -> tuple[float, float]:
        return self.min, self.max


class PercentileObserver(Observer):
    """Per-batch percentiles (default 0.01 / 99.99), averaged over batches.

    Clips the rare outliers of post-GELU and attention activations, which min-max lets dominate.
    """

    def __init__(self, lower: float = 0.01, upper: float = 99.99) -> None:
        super().__init__()
        self.lower, self.upper = lower, upper
        self._lo_sum = 0.0
        self._hi_sum = 0.0

    def update(self, x: Tensor) -> None:
        super().update(x)
        flat = x.reshape(-1).float()
        n = flat.numel()
        lo_k = min(n, max(1, math.ceil(n * self.lower / 100)))
        hi_k = min(n, max(1, math.ceil(n * self.upper / 100)))
        # top-k of the few extreme values: much cheaper than a full kthvalue selection
        self._lo_sum += float(flat.topk(lo_k, largest=False, sorted=True).values[-1])
        self._hi_sum += float(flat.topk(n - hi_k + 1, sorted=True).values[-1])

    def range(self, bits: int) -> tuple[float, float]:
        return self._lo_sum / self.batches, self._hi_sum / self.batches


class MSEObserver(Observer):
    """Searches the clipping ratio α (range = α·[min, max]) that minimises the quantization MSE.

    The MSE is measured on a seeded uniform sample of the calibration activations (``samples``
    values per batch), once per bit-width, and cached.
    """

    def __init__(self, samples: int = 1 << 15, candidates: int = 100) -> None:
        super().__init__()
        self.samples = samples
        self.ratios = torch.linspace(1.0 / candidates, 1.0, candidates)
        self._sample: list[Tensor] = []
        self._generator = torch.Generator().manual_seed(0)
        self._ranges: dict[int, tuple[float, float]] = {}

    def update(self, x: Tensor) -> None:
        super().update(x)
        flat = x.reshape(-1).float().cpu()
        if flat.numel() > self.samples:
            flat = flat[torch.randint(flat.numel(), (self.samples,), generator=self._generator)]
        self._sample.append(flat)
        self._ranges = {}

    def range(self, bits: int) -> tuple[float, float]:
        if bits not in self._ranges:
            sample = torch.cat(self._sample)
            lo, hi = min(self.min, 0.0), max(self.max, 0.0)
            errors = torch.cat([  # chunks of 10 ratios bound the memory to 10 copies of the sample
                (fake_quant_affine(sample[None, :], r[:, None] * lo, r[:, None] * hi, bits) - sample).pow(2).mean(dim=1)
                for r in self.ratios.split(10)
            ])
            best = float(self.ratios[int(errors.argmin())])
            self._ranges[bits] = (best * lo, best * hi)
        return self._ranges[bits]


OBSERVERS: Registry[type[Observer]] = Registry("observer", {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
})
"""Activation observers by name (``calibrate(..., observer=name)``)."""

DEFAULT_OBSERVER = "percentile"
"""For static per-tensor ranges: clearly better than min-max at 4 and 3 bits and level with MSE
search, at no per-bit-width search cost (``benchmarks/quant_table.py``)."""

WEIGHT_CLIPPING = ("minmax", "mse")
"""Weight range choices: the per-channel max |w|, or the MSE-optimal fraction of it."""


def weight_clip_ratio(w: Tensor, bits: int, candidates: int = 50) -> Tensor:
    """Per output channel, the ratio in (0, 1] of max |w| that minimises the squared error at ``bits``."""
    flat = w.reshape(w.shape[0], -1)
    best_err = torch.full((flat.shape[0],), math.inf, dtype=flat.dtype, device=flat.device)
    best = torch.ones_like(best_err)
    for ratio in torch.linspace(1.0, 0.2, candidates).tolist():
        clip = torch.full_like(best, ratio)
        err = (fake_quant_symmetric(flat, bits, clip) - flat).pow(2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, clip, best)
    return best
