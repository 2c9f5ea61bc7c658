"""Quantized components: every GEMM-like op of a model, each with its own (w, a) bits.

A component multiplies two operands: the first (an activation) gets the ``a`` bits, the second
gets the ``w`` bits — the weight for Linear/Conv, the second activation (k or v) for the two
attention matmuls. That is how the hardware simulator sees them too: a GEMM with bits_a, bits_b.

For sensitivity metrics, ``QuantModel.recording()`` gives each component a dict to fill: each forward
then stores the float operands (before quantization, still in the autograd graph) under the
component's name as :class:`Operands`, so gradients with respect to them can be taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pmq.allocation import Bits
from pmq.errors import PMQError
from pmq.quant.quantizers import ActQuantizer, WeightQuantizer


@dataclass
class Operands:
    """The float operands of a component's last forward: ``a`` gets the a-bits, ``w`` the w-bits."""

    a: Tensor
    w: Tensor


class QuantComponent(nn.Module):
    """Base class: two quantizers, a bits setter and operand recording."""

    kind = ""  # "linear", "conv" or "matmul"

    def __init__(self, quantizer_w: WeightQuantizer | ActQuantizer) -> None:
        super().__init__()
        self.quantizer_a = ActQuantizer()
        self.quantizer_w = quantizer_w
        self.component_name = ""  # set by quantize_model: the stable module path
        self.recording: dict[str, Operands] | None = None
        # Per-token bits the patch-wise module (pmq.patchwise) sets for the current forward; None = the
        # quantizer's own bits. ``token_bits_w`` is for the second operand of the attention matmuls.
        self.token_bits_a: Tensor | None = None
        self.token_bits_w: Tensor | None = None

    def set_bits(self, bits: Bits) -> None:
        self.quantizer_w.bits = bits.w
        self.quantizer_a.bits = bits.a

    def _record(self, a: Tensor, w: Tensor) -> None:
        if self.recording is not None:
            self.recording[self.component_name] = Operands(a, w)

    def _quantize_a(self, x: Tensor) -> Tensor:
        if self.token_bits_a is None:
            return self.quantizer_a(x)
        return self.quantizer_a.quantize(x, self.token_bits_a)


class QuantLinear(QuantComponent):
    """``nn.Linear`` with a quantized input and per-output-channel quantized weight.

    Holds the original ``weight``/``bias`` Parameters, so state-dict keys are unchanged.
    """

    kind = "linear"

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(WeightQuantizer())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x: Tensor) -> Tensor:
        self._record(x, self.weight)
        return F.linear(self._quantize_a(x), self.quantizer_w(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class QuantConv2d(QuantComponent):
    """``nn.Conv2d`` with quantized input and per-output-channel weight.

    Per-token input ranges: a patch embedding (kernel == stride, no padding) quantizes each patch
    as a row (im2col); a conv whose windows overlap shares input pixels between rows, so one
    integer scale per row cannot exist there and the range is taken per image instead.
    """

    kind = "conv"

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(WeightQuantizer())
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise PMQError(f"conv with padding {conv.padding!r}/{conv.padding_mode!r} cannot be quantized: "
                           "use numeric zero padding")
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.kernel_size = conv.kernel_size
        self.patchify = (tuple(self.kernel_size) == tuple(self.stride) and not any(self.padding)
                         and all(d == 1 for d in self.dilation))

    def forward(self, x: Tensor) -> Tensor:
        self._record(x, self.weight)
        token = self.quantizer_a.granularity == "token"
        x_q = self.quantize_input(x, self.quantizer_a.bits) if token else self.quantizer_a(x)  # (observes)
        return F.conv2d(x_q, self.quantizer_w(self.weight), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def quantize_input(self, x: Tensor, bits: int | None) -> Tensor:
        """The input at ``bits`` as the forward quantizes it (per patch, per image or per tensor)."""
        quantizer = self.quantizer_a
        if quantizer.granularity != "token" or bits is None:
            return quantizer.quantize(x, bits)
        if not self.patchify:
            return quantizer.quantize(x.flatten(1), bits).view_as(x)
        patches = F.unfold(x, self.kernel_size, stride=self.stride).transpose(1, 2)  # (B, L, C·k·k)
        patches = quantizer.quantize(patches, bits).transpose(1, 2)
        return F.fold(patches, x.shape[-2:], self.kernel_size, stride=self.stride)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, stride={self.stride}"


class QuantMatMul(QuantComponent):
    """A product of two activations with both quantized: ``a @ b`` (``a @ bᵀ`` with ``transpose_b``),
    or a two-operand einsum when called with ``equation``.

    ``a`` rows are GEMM rows, so per-token ranges apply to them. For q·kᵀ, ``b`` is k token-major
    (B, heads, N, D) with ``transpose_b``, or kᵀ without: either way each key token (a GEMM column)
    gets its own range; for attn·v (``b`` = v, rows = the reduction) ranges are per channel. An
    einsum's operands take their ranges along their first contracted index.
    """

    kind = "matmul"

    def __init__(self, transpose_b: bool = False) -> None:
        super().__init__(ActQuantizer(reduce_dim=-1 if transpose_b else -2))
        self.transpose_b = transpose_b

    def forward(self, a: Tensor, b: Tensor, equation: str | None = None) -> Tensor:
        self._record(a, b)
        if equation is not None:
            self.quantizer_a.reduce_dim, self.quantizer_w.reduce_dim = _einsum_reduce_dims(equation)
        b_q = self.quantizer_w(b) if self.token_bits_w is None else self.quantizer_w.quantize(b, self.token_bits_w)
        if equation is not None:
            return torch.einsum(equation, self._quantize_a(a), b_q)
        return self._quantize_a(a) @ (b_q.transpose(-2, -1) if self.transpose_b else b_q)

    def extra_repr(self) -> str:
        return f"transpose_b={self.transpose_b}"


def _einsum_reduce_dims(equation: str) -> tuple[int, int]:
    """Each operand's first contracted index, as a negative dim."""
    left, right = equation.replace(" ", "").split("->")[0].split(",")
    contracted = [c for c in left if c in right and c not in equation.split("->")[1]]
    if not contracted:
        raise PMQError(f"einsum {equation!r} contracts no index: it is not a GEMM")
    return left.index(contracted[0]) - len(left), right.index(contracted[0]) - len(right)


def apply_mask(attn: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
    """SDPA's mask semantics: boolean True = attend, float masks are added; causal = lower triangle."""
    if is_causal:
        keep = torch.ones(attn.shape[-2:], dtype=torch.bool, device=attn.device).tril()
        attn = attn.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        attn = attn.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn + attn_mask
    return attn
