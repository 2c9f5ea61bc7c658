"""Quantizer modules: symmetric per-output-channel weights, asymmetric per-tensor / per-token activations.

Bits run from 2 to 8; ``None`` means float (identity, the input tensor itself is returned).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from pmq.errors import PMQError
from pmq.quant.functional import (
    MAX_BITS,
    MIN_BITS,
    check_bits,
    fake_quant_affine,
    fake_quant_symmetric,
    symmetric_grid,
)
from pmq.quant.observers import OBSERVERS, WEIGHT_CLIPPING, Observer, weight_clip_ratio

GRANULARITIES = ("tensor", "token")

RowBits = int | Tensor | None
"""Activation bits: one int for the whole tensor, or an integer tensor with one entry per row
(token), broadcastable to ``x.shape[:-1]`` (a ``(B, N)`` tensor is aligned with the token axis of
``(B, heads, N, D)`` attention operands). ``None`` = float."""


class WeightQuantizer(nn.Module):
    """Symmetric per-output-channel weight quantizer; ``clipping`` is "minmax" or "mse".

    MSE clipping searches, per channel and per bit-width, the max-|w| ratio that minimises the
    squared error; the result is cached until the weight tensor changes (in-place updates bump its
    version counter, which is part of the cache key).
    """

    def __init__(self, clipping: str = "minmax") -> None:
        super().__init__()
        self.bits: int | None = None
        self.clipping = clipping  # also empties the clip cache

    @property
    def clipping(self) -> str:
        return self._clipping

    @clipping.setter
    def clipping(self, name: str) -> None:
        if name not in WEIGHT_CLIPPING:
            raise PMQError(f"unknown weight clipping {name!r}: use one of {', '.join(WEIGHT_CLIPPING)}")
        self._clipping = name
        self._clip_cache: dict[int, tuple[tuple, Tensor]] = {}  # bits -> (weight identity, ratios)

    def quantize(self, w: Tensor, bits: int | None) -> Tensor:
        """``w`` fake-quantized at ``bits`` (``None`` returns ``w`` itself)."""
        if bits is None:
            return w
        check_bits(bits, "weight quantizer")
        return fake_quant_symmetric(w, bits, self._clip(w, bits))

    def quantize_each(self, w: Tensor, bits: list[int]) -> Tensor:
        """``w`` fake-quantized at each of ``bits``, stacked along a new leading dim (no autograd):
        the per-channel max |w| is taken once and every candidate's grid applied in one broadcast."""
        for b in bits:
            check_bits(b, "weight quantizer")
        w = w.detach()
        shape = (len(bits), w.shape[0], *([1] * (w.dim() - 1)))
        absmax = w.abs().reshape(w.shape[0], -1).amax(dim=1)
        clips = [self._clip(w, b) for b in bits]
        if any(clip is not None for clip in clips):
            absmax = absmax * torch.stack([torch.ones_like(absmax) if c is None else c for c in clips])
        half = 2.0 ** (_candidates(tuple(bits), w.dtype, w.device) - 1)
        with torch.no_grad():
            return symmetric_grid(w, absmax.expand(len(bits), -1).reshape(shape), half.reshape(-1, *([1] * w.dim())))

    def prepare(self, w: Tensor) -> None:
        """Run the clipping search for the current bits now (at calibration), not in the first forward."""
        if self.bits is not None:
            self._clip(w, self.bits)

    def _clip(self, w: Tensor, bits: int) -> Tensor | None:
        if self._clipping == "minmax":
            return None
        identity = (w.data_ptr(), w._version, tuple(w.shape))
        cached = self._clip_cache.get(bits)
        if cached is None or cached[0] != identity:
            cached = self._clip_cache[bits] = (identity, weight_clip_ratio(w.detach(), bits))
        return cached[1]

    def forward(self, w: Tensor) -> Tensor:
        return self.quantize(w, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clipping={self._clipping}"


class ActQuantizer(nn.Module):
    """Asymmetric activation quantizer.

    ``granularity="tensor"``: one static range per tensor, taken from a calibrated observer
    (see ``pmq.quant.calibrate``). ``granularity="token"``: one dynamic min-max range per row,
    computed at inference over ``reduce_dim`` (the last dim by default: a token's features).
    Only the range over the GEMM's outer dimension can be factored out of an integer dot product,
    so the ``v`` operand of attn·v (whose rows are the reduction dimension) uses ``reduce_dim=-2``:
    one range per head channel, over the tokens.

    ``bits`` may be an int or, for the patch-wise module, an integer tensor with one entry per row
    (see :data:`RowBits`), in either granularity; a per-channel operand (``reduce_dim=-2``) then
    takes its per-channel ranges within each group of rows that share a bit-width.
    """

    def __init__(self, reduce_dim: int = -1) -> None:
        super().__init__()
        self.bits: RowBits = None
        self.granularity = "tensor"
        self.reduce_dim = reduce_dim
        self.observer: Observer | None = None
        self.observing = False

    @property
    def granularity(self) -> str:
        return self._granularity

    @granularity.setter
    def granularity(self, value: str) -> None:
        if value not in GRANULARITIES:
            raise PMQError(f"unknown activation granularity {value!r}: use one of {', '.join(GRANULARITIES)}")
        self._granularity = value

    def start_observing(self, observer: str | Observer) -> None:
        """Collect range statistics from every forward until :meth:`stop_observing`."""
        if isinstance(observer, str):
            if observer not in OBSERVERS:
                raise PMQError(f"unknown observer {observer!r}: use one of {', '.join(OBSERVERS)}")
            observer = OBSERVERS[observer]()
        self.observer = observer
        self.observing = True

    def stop_observing(self) -> None:
        self.observing = False

    def resolve_ranges(self) -> None:
        """Compute (and cache) the static ranges the current bits will use; no-op otherwise."""
        if self._granularity != "tensor" or self.bits is None or self.observer is None or not self.observer.ready:
            return
        for bits in (self.bits.unique().tolist() if isinstance(self.bits, Tensor) else [self.bits]):
            self.observer.range(int(bits))

    def forward(self, x: Tensor) -> Tensor:
        if self.observing:
            self.observer.update(x.detach())
        return self.quantize(x, self.bits)

    def quantize(self, x: Tensor, bits: RowBits) -> Tensor:
        """``x`` fake-quantized at ``bits`` with this quantizer's ranges (``None`` returns ``x``)."""
        if bits is None:
            return x
        if isinstance(bits, Tensor):
            bits = _align_row_bits(bits.to(torch.long), x).unsqueeze(-1)
            if bits.numel() and (bits.min() < MIN_BITS or bits.max() > MAX_BITS):
                raise PMQError(f"per-row bits must lie in {MIN_BITS}..{MAX_BITS}, got {bits.min()}..{bits.max()}")
        else:
            check_bits(bits, "activation quantizer")
        if self._granularity == "token" and isinstance(bits, Tensor) and self.reduce_dim != -1:
            lo, hi = _group_ranges(x.detach(), bits, self.reduce_dim)
        elif self._granularity == "token":
            lo = x.detach().amin(dim=self.reduce_dim, keepdim=True)  # (aminmax with a dim is slower on CPU)
            hi = x.detach().amax(dim=self.reduce_dim, keepdim=True)
        else:
            lo, hi = self._static_range(x, bits)
        return fake_quant_affine(x, lo, hi, bits)

    def quantize_each(self, x: Tensor, bits: list[int]) -> Tensor:
        """``x`` fake-quantized at each of ``bits``, stacked along a new leading dim (no autograd).

        Per-token ranges do not depend on the bit-width, so they are taken once and every
        candidate is quantized in one broadcast pass: a sensitivity metric prices all candidates of
        every operand, and one pass per candidate would cost more kernel launches than the model.
        """
        for b in bits:
            check_bits(b, "activation quantizer")
        x = x.detach()
        if self._granularity != "token":
            return torch.stack([self.quantize(x, b) for b in bits])
        lo = x.amin(dim=self.reduce_dim, keepdim=True)
        hi = x.amax(dim=self.reduce_dim, keepdim=True)
        candidates = _candidates(tuple(bits), x.dtype, x.device).reshape(-1, *([1] * x.dim()))
        with torch.no_grad():
            return fake_quant_affine(x.unsqueeze(0), lo, hi, candidates)

    def _static_range(self, x: Tensor, bits: Tensor | int) -> tuple[Tensor, Tensor]:
        if self.observer is None or not self.observer.ready:
            raise PMQError("per-tensor activation quantization needs calibrated ranges: run "
                           "pmq.quant.calibrate(qv, images) first, or use granularity 'token'")
        if isinstance(bits, int):
            lo, hi = self.observer.range(bits)
            return x.new_tensor(lo), x.new_tensor(hi)
        lo = torch.zeros(bits.shape, dtype=x.dtype, device=x.device)
        hi = torch.zeros_like(lo)
        for b in bits.unique().tolist():
            b_lo, b_hi = self.observer.range(int(b))
            lo = torch.where(bits == b, b_lo, lo)
            hi = torch.where(bits == b, b_hi, hi)
        return lo, hi

    def extra_repr(self) -> str:
        bits = "per-row" if isinstance(self.bits, Tensor) else self.bits
        observer = type(self.observer).__name__ if self.observer is not None else None
        return f"bits={bits}, granularity={self._granularity}, observer={observer}"


@functools.lru_cache(maxsize=64)
def _candidates(bits: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Bit candidates as a tensor on ``device``, made once: a host-to-device copy per call would
    wait for the GPU's queue each time."""
    return torch.tensor(bits, dtype=dtype, device=device)


def _group_ranges(x: Tensor, bits: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Per-channel ranges over ``dim`` taken separately within each group of rows sharing a bit-width.

    For the ``v`` operand of attn·v (rows = the reduction): each bit group is its own partial dot
    product on hardware, so each needs (and may have) its own per-channel scale.
    """
    lo, hi = torch.zeros_like(x), torch.zeros_like(x)
    for b in bits.unique().tolist():
        in_group = bits == b
        lo_b = torch.where(in_group, x, torch.inf).amin(dim=dim, keepdim=True)
        hi_b = torch.where(in_group, x, -torch.inf).amax(dim=dim, keepdim=True)
        lo, hi = torch.where(in_group, lo_b, lo), torch.where(in_group, hi_b, hi)
    return lo, hi


def _align_row_bits(bits: Tensor, x: Tensor) -> Tensor:
    """Shape per-row bits so they broadcast over ``x.shape[:-1]``: (N,), (B, N) or exactly x.shape[:-1]."""
    rows = x.shape[:-1]
    if bits.dim() == 2 and len(rows) == 3 and bits.shape == (rows[0], rows[2]):
        bits = bits.unsqueeze(1)  # (B, N) over (B, heads, N, D)
    try:
        return torch.broadcast_to(bits, rows)
    except RuntimeError:
        raise PMQError(f"per-row bits of shape {tuple(bits.shape)} do not match the rows {tuple(rows)} "
                       "of the tensor: give one entry per token, (N,) or (B, N)") from None
