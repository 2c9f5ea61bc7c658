"""Wrap a timm ViT/DeiT so that each of its components carries its own bit-widths.

Components (stable module paths, in forward order)::

    patch_embed.proj                                   Conv2d: image patches × weight
    blocks.i.attn.qkv                                  Linear
    blocks.i.attn.matmul_qk                            q·kᵀ  (a = q rows, w = k)
    blocks.i.attn.matmul_av                            attn·v (a = attention rows, w = v)
    blocks.i.attn.proj, blocks.i.mlp.fc1, blocks.i.mlp.fc2
    head (and head_dist for distilled DeiT)            Linear

Everything else (LayerNorms, softmax, GELU, residual adds, embeddings) stays float: those run on
an accelerator's vector unit, not on the mixed-precision GEMM array.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor, nn

from pmq.allocation import FLOAT, BitAllocation
from pmq.errors import PMQError
from pmq.quant.modules import Operands, QuantAttention, QuantComponent, QuantConv2d, QuantLinear
from pmq.quant.quantizers import ActQuantizer

DEFAULT_GRANULARITY = "token"
"""Per-token dynamic activation ranges: see ``benchmarks/quant_table.py`` for the measurements."""
DEFAULT_WEIGHT_CLIPPING = "minmax"
"""On the int-b grid, min-max weight ranges beat MSE clipping on the demo ViT (W2A8 75.7 vs 67.7,
W4A4 89.2 vs 88.7; MSE only wins W3A8, 87.8 vs 87.0): the MSE-optimal clip minimises the weight
error, not the output error, and clips the large weights that matter."""
_HEADS = ("head", "head_dist")


@dataclass(frozen=True)
class ComponentSpec:
    """A component's stable name and kind ("conv", "linear" or "matmul")."""

    name: str
    kind: str


def component_specs(model: nn.Module) -> list[ComponentSpec]:
    """The quantizable components of a timm ViT (plain or already wrapped), in forward order."""
    model = model.model if isinstance(model, QuantViT) else model
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    blocks = getattr(model, "blocks", None)
    if not isinstance(proj, nn.Conv2d | QuantConv2d) or not isinstance(blocks, nn.Sequential | nn.ModuleList):
        raise PMQError(f"{type(model).__name__} is not a timm VisionTransformer/DeiT (needs patch_embed.proj "
                       "and blocks): use a ViT or DeiT model name")
    specs = [ComponentSpec("patch_embed.proj", "conv")]
    for i, block in enumerate(blocks):
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        linears = [getattr(attn, "qkv", None), getattr(attn, "proj", None),
                   getattr(mlp, "fc1", None), getattr(mlp, "fc2", None)]
        if not all(isinstance(m, nn.Linear | QuantLinear) for m in linears) or not hasattr(attn, "num_heads"):
            raise PMQError(f"block {i} of {type(model).__name__} is not a timm ViT block (attn.qkv, attn.proj, "
                           "mlp.fc1, mlp.fc2): this model family is not supported yet")
        specs += [ComponentSpec(f"blocks.{i}.attn.qkv", "linear"),
                  ComponentSpec(f"blocks.{i}.attn.matmul_qk", "matmul"),
                  ComponentSpec(f"blocks.{i}.attn.matmul_av", "matmul"),
                  ComponentSpec(f"blocks.{i}.attn.proj", "linear"),
                  ComponentSpec(f"blocks.{i}.mlp.fc1", "linear"),
                  ComponentSpec(f"blocks.{i}.mlp.fc2", "linear")]
    specs += [ComponentSpec(name, "linear") for name in _HEADS
              if isinstance(getattr(model, name, None), nn.Linear | QuantLinear)]
    return specs


class QuantViT(nn.Module):
    """A deep copy of a timm ViT whose components are quantized modules; ``qv(x)`` runs it.

    Starts all-float (logits equal to the original's). ``apply(allocation)`` sets bits;
    ``set_granularity`` picks per-tensor (static, needs ``calibrate``) or per-token (dynamic)
    activation ranges; ``recording()`` exposes the float operands for sensitivity metrics.
    """

    def __init__(self, model: nn.Module, granularity: str = DEFAULT_GRANULARITY,
                 weight_clipping: str = DEFAULT_WEIGHT_CLIPPING) -> None:
        super().__init__()
        specs = component_specs(model)
        self.model = copy.deepcopy(model.model if isinstance(model, QuantViT) else model)
        if not isinstance(self.model.patch_embed.proj, QuantConv2d):  # else: re-wrapping a wrapped copy
            self.model.patch_embed.proj = QuantConv2d(self.model.patch_embed.proj)
            for block in self.model.blocks:
                block.attn = QuantAttention(block.attn)
                block.mlp.fc1 = QuantLinear(block.mlp.fc1)
                block.mlp.fc2 = QuantLinear(block.mlp.fc2)
            for name in _HEADS:
                if isinstance(getattr(self.model, name, None), nn.Linear):
                    setattr(self.model, name, QuantLinear(getattr(self.model, name)))
        self._components: dict[str, QuantComponent] = {}
        for spec in specs:
            component = self.model.get_submodule(spec.name)
            component.component_name = spec.name
            self._components[spec.name] = component
        self.allocation = BitAllocation.uniform(FLOAT, self._components)
        self.apply(self.allocation)  # a re-wrapped copy starts float too
        self.set_granularity(granularity)
        self.set_weight_clipping(weight_clipping)
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def component_names(self) -> list[str]:
        return list(self._components)

    def components(self) -> dict[str, QuantComponent]:
        """Name → quantized module (each has ``quantizer_a``, ``quantizer_w``, ``kind``)."""
        return dict(self._components)

    def component(self, name: str) -> QuantComponent:
        if name not in self._components:
            raise PMQError(f"unknown component {name!r}: see QuantViT.component_names()")
        return self._components[name]

    def apply(self, allocation: BitAllocation) -> QuantViT:
        """Set every component's bits (validated first) and its patch-wise token settings, if any. Returns self."""
        from pmq.patchwise.runtime import install_patchwise  # it builds on these modules: import on use

        allocation.validate(self._components)
        for name, bits in allocation.items():
            self._components[name].set_bits(bits)
        self.patchwise = install_patchwise(self, allocation.patchwise)
        self.allocation = allocation
        return self

    def activation_quantizers(self) -> Iterator[ActQuantizer]:
        """Every activation quantizer: each component's input, and both operands of the matmuls."""
        for component in self._components.values():
            yield component.quantizer_a
            if isinstance(component.quantizer_w, ActQuantizer):
                yield component.quantizer_w

    def set_granularity(self, granularity: str, names: Iterable[str] | None = None) -> None:
        """Activation ranges "tensor" (static, calibrated) or "token" (dynamic per row), for all or some."""
        for name in self._components if names is None else names:
            component = self.component(name)
            component.quantizer_a.granularity = granularity
            if isinstance(component.quantizer_w, ActQuantizer):
                component.quantizer_w.granularity = granularity

    def set_weight_clipping(self, clipping: str) -> None:
        """Weight ranges "minmax" (max |w| per channel) or "mse" (MSE-optimal clip per channel)."""
        for component in self._components.values():
            if not isinstance(component.quantizer_w, ActQuantizer):
                component.quantizer_w.clipping = clipping

    @contextmanager
    def recording(self, names: Iterable[str] | None = None) -> Iterator[dict[str, Operands]]:
        """Within the block, forwards store each component's float operands in the yielded dict.

        ``Operands.a`` is the input activation (first matmul operand), ``Operands.w`` the weight
        Parameter (second matmul operand); both stay in the autograd graph (give the images
        ``requires_grad=True`` to differentiate with respect to ``patch_embed.proj``'s input), e.g.::

            with qv.recording() as ops:
                loss = F.cross_entropy(qv(x), y)
                grads = torch.autograd.grad(loss, [ops[n].a for n in ops])
        """
        store: dict[str, Operands] = {}
        chosen = [self.component(name) for name in (self._components if names is None else names)]
        for component in chosen:
            component.recording = store
        try:
            yield store
        finally:
            for component in chosen:
                component.recording = None


def quantize_vit(model: nn.Module, granularity: str = DEFAULT_GRANULARITY,
                 weight_clipping: str = DEFAULT_WEIGHT_CLIPPING) -> QuantViT:
    """Wrap a deep copy of a timm ViT/DeiT (the original is left untouched); all components float.

    Given a QuantViT, returns an independent float copy of it (calibrated observers included).
    """
    return QuantViT(model, granularity, weight_clipping)
