"""Model → hwsim workload: the GEMMs and vector ops of a timm ViT, with shapes from a real forward.

Every GEMM is named after the PMQ component whose bits it runs at (``blocks.3.attn.qkv``,
``blocks.3.attn.matmul_qk``...), so cost tables map one-to-one onto allocation choices.
Float components are priced as 16-bit operands (what a mixed-precision accelerator would run
an unquantized layer at).

Patch-wise settings (``allocation.patchwise``) turn a layer's token-row GEMMs into grouped GEMMs
and add the token ranking and regrouping work: see :mod:`pmq.patchwise.hardware`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

import hwsim
from pmq.allocation import BitAllocation, Bits
from pmq.defaults import FLOAT_BITS_ON_HARDWARE


def _hw_bits(bits: int | None) -> int:
    return FLOAT_BITS_ON_HARDWARE if bits is None else bits


@dataclass
class _Trace:
    """Ops in the order the forward pass produced them, each depending on the one before."""

    ops: list[hwsim.Gemm | hwsim.VectorOp] = field(default_factory=list)
    attention: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # name → B, N, H, hd


def _attention_ops(name: str, batch: int, tokens: int, heads: int, head_dim: int,
                   qk: Bits, av: Bits) -> list[hwsim.Gemm | hwsim.VectorOp]:
    return [
        hwsim.Gemm(f"{name}.matmul_qk", m=tokens, k=head_dim, n=tokens, bits_a=_hw_bits(qk.a),
                   bits_b=_hw_bits(qk.w), count=batch * heads, kind="matmul"),
        hwsim.VectorOp(f"{name}.softmax", "softmax", batch * heads * tokens * tokens),
        hwsim.Gemm(f"{name}.matmul_av", m=tokens, k=tokens, n=head_dim, bits_a=_hw_bits(av.a),
                   bits_b=_hw_bits(av.w), count=batch * heads, kind="matmul"),
    ]


def model_workload(model: nn.Module, allocation: BitAllocation, batch: int = 1,
                   input_size: tuple[int, int, int] | None = None) -> hwsim.Workload:
    """Run one forward pass of ``model`` on a zero batch and record its ops for hwsim.

    Linear and patch-embedding layers become GEMMs (m = rows of the input), each attention adds
    q·kᵀ and attn·v per head (``count`` = batch × heads) with a softmax between them, LayerNorm and
    GELU become vector ops, and each block's two residual sums become ``add`` ops.
    """
    if input_size is None:
        input_size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))) \
            if getattr(model, "pretrained_cfg", None) else (3, 224, 224)
        embed = getattr(model, "patch_embed", None)
        if embed is not None and getattr(embed, "img_size", None):
            input_size = (embed.proj.in_channels, *embed.img_size)
    trace, handles = _Trace(), []
    float_bits = Bits(None, None)

    def bits_of(name: str) -> Bits:
        return allocation.bits.get(name, float_bits)

    def on_linear(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if name.endswith(".attn.proj"):
                attn = name.rsplit(".", 1)[0]
                trace.ops.extend(_attention_ops(attn, *trace.attention[attn], bits_of(f"{attn}.matmul_qk"),
                                                bits_of(f"{attn}.matmul_av")))
            x, bits = inputs[0], bits_of(name)
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                m, k = output.shape[0] * output.shape[2] * output.shape[3], module.in_channels * kh * kw
                n = module.out_channels
            else:
                m, k, n = x.numel() // x.shape[-1], x.shape[-1], output.shape[-1]
            trace.ops.append(hwsim.Gemm(name, m=m, k=k, n=n, bits_a=_hw_bits(bits.a), bits_b=_hw_bits(bits.w)))
            if name.endswith((".attn.proj", ".mlp.fc2")):
                trace.ops.append(hwsim.VectorOp(f"{name}.residual_add", "add", output.numel()))
        return hook

    def on_vector(name: str, kind: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            trace.ops.append(hwsim.VectorOp(name, kind, output.numel()))
        return hook

    def on_attention(name: str):
        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs["x"]
            trace.attention[name] = (x.shape[0], x.shape[1], module.num_heads, module.head_dim)
        return pre_hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and name.endswith("patch_embed.proj")):
            handles.append(module.register_forward_hook(on_linear(name)))
        elif isinstance(module, nn.LayerNorm):
            handles.append(module.register_forward_hook(on_vector(name, "layernorm")))
        elif isinstance(module, nn.GELU):
            handles.append(module.register_forward_hook(on_vector(name, "gelu")))
        elif hasattr(module, "num_heads") and hasattr(module, "qkv"):
            handles.append(module.register_forward_pre_hook(on_attention(name), with_kwargs=True))
    from pmq.patchwise.hardware import patchwise_ops  # patch-wise builds on this module: import on use
    from pmq.patchwise.spec import validate_patchwise

    spec = validate_patchwise(allocation.patchwise, allocation.bits)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(batch, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    ops = trace.ops
    if spec is not None:
        ops = patchwise_ops(ops, spec, trace.attention, int(getattr(model, "num_prefix_tokens", 1)), bits_of)
    workload, previous = hwsim.Workload(), []
    for op in ops:
        workload.add(op, after=previous)
        previous = [op.name]
    return workload

