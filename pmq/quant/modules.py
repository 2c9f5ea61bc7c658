"""Quantized components: every GEMM of a ViT, each with its own (w, a) bits.

A component multiplies two operands: the first (an activation) gets the ``a`` bits, the second
gets the ``w`` bits — the weight for Linear/Conv, the second activation (k or v) for the two
attention matmuls. That is how the hardware simulator sees them too: a GEMM with bits_a, bits_b.

For sensitivity metrics, ``QuantViT.recording()`` gives each component a dict to fill: each forward
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
        self.component_name = ""  # set by quantize_vit: the stable module path
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
    """``nn.Conv2d`` (the patch embedding) with quantized input and per-output-channel weight.

    Per-token input granularity treats each patch as a row (im2col), which needs kernel == stride
    and no padding, as in ViT patch embeddings.
    """

    kind = "conv"

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(WeightQuantizer())
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise PMQError(f"conv with padding {conv.padding!r}/{conv.padding_mode!r} is not supported: "
                           "ViT patch embeddings use numeric zero padding")
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.kernel_size = conv.kernel_size

    def forward(self, x: Tensor) -> Tensor:
        self._record(x, self.weight)
        x_q = self._quantize_patches(x) if self.quantizer_a.granularity == "token" else self.quantizer_a(x)
        return F.conv2d(x_q, self.quantizer_w(self.weight), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def _quantize_patches(self, x: Tensor) -> Tensor:
        if tuple(self.kernel_size) != tuple(self.stride) or any(self.padding) or any(d != 1 for d in self.dilation):
            raise PMQError("per-token quantization of a conv input needs non-overlapping patches "
                           "(kernel == stride, no padding); use granularity 'tensor' for this model")
        patches = F.unfold(x, self.kernel_size, stride=self.stride).transpose(1, 2)  # (B, L, C·k·k)
        patches = self.quantizer_a(patches).transpose(1, 2)
        return F.fold(patches, x.shape[-2:], self.kernel_size, stride=self.stride)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, stride={self.stride}"


class QuantMatMul(QuantComponent):
    """``a @ b`` (or ``a @ bᵀ`` with ``transpose_b``) with both operands quantized activations.

    ``a`` rows are GEMM rows, so per-token ranges apply to them. ``b`` is passed token-major
    (k or v, shape (B, heads, N, D)): for q·kᵀ its rows are GEMM columns (per-token ranges are
    fine); for attn·v its rows are the reduction dimension, so its ranges are taken per channel.
    """

    kind = "matmul"

    def __init__(self, transpose_b: bool) -> None:
        super().__init__(ActQuantizer(reduce_dim=-1 if transpose_b else -2))
        self.transpose_b = transpose_b

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self._record(a, b)
        b_q = self.quantizer_w(b) if self.token_bits_w is None else self.quantizer_w.quantize(b, self.token_bits_w)
        return self._quantize_a(a) @ (b_q.transpose(-2, -1) if self.transpose_b else b_q)

    def extra_repr(self) -> str:
        return f"transpose_b={self.transpose_b}"


class QuantAttention(nn.Module):
    """timm ``Attention`` on the explicit path (q·kᵀ → mask → softmax → attn·v), every GEMM quantized.

    Takes over the wrapped module's children (``qkv``, ``q_norm``, ``k_norm``, ``attn_drop``,
    ``norm``, optional ``gate``, ``proj``, ``proj_drop``) and keeps timm ≥ 1.0.16's signature
    ``forward(x, attn_mask=None, is_causal=False)``, which ``Block.forward`` calls with keywords.
    """

    fused_attn = False  # never SDPA: the two matmuls must be visible (and double-backward works)
    patchwise = None  # a pmq.patchwise layer policy replaces forward while installed

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.head_dim = attn.head_dim
        self.attn_dim = getattr(attn, "attn_dim", attn.num_heads * attn.head_dim)
        self.scale = attn.scale
        self.qkv = QuantLinear(attn.qkv)
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.matmul_qk = QuantMatMul(transpose_b=True)
        self.attn_drop = attn.attn_drop
        self.matmul_av = QuantMatMul(transpose_b=False)
        self.norm = getattr(attn, "norm", nn.Identity())
        self.gate = getattr(attn, "gate", None)
        self.proj = QuantLinear(attn.proj)
        self.proj_drop = attn.proj_drop

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if self.patchwise is not None:
            return self.patchwise(self, x, attn_mask, is_causal)
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = self.matmul_qk(q * self.scale, k)
        attn = _apply_mask(attn, attn_mask, is_causal).softmax(dim=-1)
        x = self.matmul_av(self.attn_drop(attn), v)
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))


def _apply_mask(attn: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
    """SDPA's mask semantics: boolean True = attend, float masks are added; causal = lower triangle."""
    if is_causal:
        keep = torch.ones(attn.shape[-2:], dtype=torch.bool, device=attn.device).tril()
        attn = attn.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        attn = attn.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn + attn_mask
    return attn
