"""What every metric needs: a component's operands quantized exactly as at inference, its output,
the loss, and a count of passes.

An operand is quantized by the component's own quantizer, so the error Δ = Q_b(x) − x a metric
weighs is the error the model will see (same granularity, observer ranges, weight clipping).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pmq.errors import PMQError
from pmq.quant import QuantComponent, QuantConv2d, QuantModel

OPERANDS = ("w", "a")
"""``w``: weight / second matmul operand (``Sensitivity.weights``); ``a``: first operand (``activations``)."""


def quantize_operand(component: QuantComponent, operand: str, x: Tensor, bits: int) -> Tensor:
    """``x`` (the component's ``operand``, "w" or "a") fake-quantized at ``bits`` as the forward does it.

    A conv with per-token ranges quantizes each patch (or each image) as a row, which only the
    component knows how to do.
    """
    if operand == "w":
        return component.quantizer_w.quantize(x, bits)
    if isinstance(component, QuantConv2d):
        return component.quantize_input(x, bits)
    return component.quantizer_a.quantize(x, bits)


def quant_errors(component: QuantComponent, operand: str, x: Tensor, bits: list[int]) -> Tensor:
    """Δ_b = Q_b(x) − x for every candidate, stacked: shape (len(bits), *x.shape); no autograd."""
    with torch.no_grad():
        x = x.detach()
        quantizer = component.quantizer_w if operand == "w" else component.quantizer_a
        patches = operand == "a" and isinstance(component, QuantConv2d) and quantizer.granularity == "token"
        if not patches:
            return quantizer.quantize_each(x, bits).sub_(x)
        return torch.stack([quantize_operand(component, operand, x, b) - x for b in bits])


def is_parameter_operand(component: QuantComponent) -> bool:
    """Linear/Conv weights are Parameters shared by all images; matmul operands are per image."""
    return component.kind in ("linear", "conv")


@contextmanager
def capture_outputs(qv: QuantModel, names: list[str]) -> Iterator[dict[str, Tensor]]:
    """Within the block, each forward stores the named components' outputs (in the autograd graph)."""
    store: dict[str, Tensor] = {}
    handles = []
    for name in names:
        def hook(_module, _inputs, output, name=name):
            store[name] = output
        handles.append(qv.component(name).register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def float_eval(qv: QuantModel) -> Iterator[QuantModel]:
    """All components float and eval mode for the block; the allocation and mode are restored."""
    allocation, training = qv.allocation, qv.training
    qv.apply(allocation.uniform("float", qv.component_names())).eval()
    try:
        yield qv
    finally:
        qv.apply(allocation).train(training)


def per_sample_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of each image (the metrics' loss; its mean is what ``measured`` reports)."""
    return F.cross_entropy(logits, labels, reduction="none")


@dataclass
class PassCounter:
    """Counts model passes in sweeps over the metric's image set (images processed / set size)."""

    images: int
    forward: float = 0.0
    backward: float = 0.0

    def add_forward(self, n: int) -> None:
        self.forward += n / self.images

    def add_backward(self, n: int) -> None:
        self.backward += n / self.images


def check_images(images: Tensor, labels: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or len(images) == 0:
        raise PMQError(f"images must be a non-empty (N, C, H, W) tensor, got "
                       f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    if not isinstance(labels, Tensor) or labels.shape != (len(images),) or labels.is_floating_point():
        raise PMQError(f"labels must be an integer tensor of shape ({len(images)},), one class per image, "
                       f"got {tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")


def chunks(n: int, size: int) -> list[slice]:
    if size <= 0:
        raise PMQError(f"batch_size must be positive, got {size}")
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
