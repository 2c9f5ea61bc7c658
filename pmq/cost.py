"""Hardware-independent costs of a bit allocation: MACs and BOPs per component, model size.

Shapes come from a real forward pass (hooks on the wrapped components), so attention matmuls are
counted with their batch and heads, and any input size or token count is right by construction.
Every component is seen as a GEMM: ``count`` independent products of (m × k)·(k × n).

Conventions (HAWQ): BOPs = MACs × b_w × b_a, float operands count as 32 bits; model size =
Σ quantized weights × b_w / 8 + every other parameter (biases, norms, embeddings, class token,
float components) at 32 bits, in MB = 10^6 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.quant.vit import QuantModel, component_specs, quantize_model

FLOAT_BITS = 32


@dataclass(frozen=True)
class ComponentCost:
    """One component as a GEMM: ``count`` × (m × k)·(k × n); ``params`` = weight + bias elements."""

    name: str
    kind: str
    m: int
    k: int
    n: int
    count: int
    weight_params: int
    params: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


def _base_model(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, QuantModel) else model


def default_input_shape(model: nn.Module) -> tuple[int, int, int, int]:
    """One image at the model's own resolution: (1, in_chans, H, W)."""
    patch_embed = _base_model(model).patch_embed
    height, width = patch_embed.img_size
    return (1, patch_embed.proj.weight.shape[1] * patch_embed.proj.groups, height, width)


def component_costs(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict[str, ComponentCost]:
    """GEMM shapes, MACs and parameters of every component, from one float forward on zeros.

    ``input_shape`` defaults to one image at the model's resolution, so costs are per image.
    The model itself is not changed (a fresh float wrapper runs the forward).
    """
    shape = tuple(input_shape) if input_shape is not None else default_input_shape(model)
    if len(shape) != 4 or any(int(s) <= 0 for s in shape):
        raise PMQError(f"input shape {shape} must be 4 positive sizes (batch, channels, height, width)")
    probe = quantize_model(model)  # a float copy: the forward must not depend on calibration or bits
    costs: dict[str, ComponentCost] = {}

    def hook(component: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        costs[component.component_name] = _gemm_cost(component, inputs, output)

    handles = [c.register_forward_hook(hook) for c in probe.components().values()]
    try:
        with torch.no_grad():
            probe.eval()(torch.zeros(shape))
    finally:
        for handle in handles:
            handle.remove()
    return {name: costs[name] for name in probe.component_names()}


def _gemm_cost(component: nn.Module, inputs: tuple, output: torch.Tensor) -> ComponentCost:
    name, kind = component.component_name, component.kind
    if kind == "matmul":
        a, b = inputs
        m, k = a.shape[-2:]
        n = b.shape[-2] if component.transpose_b else b.shape[-1]
        return ComponentCost(name, kind, m, k, n, math.prod(a.shape[:-2]), 0, 0)
    weight, bias = component.weight, component.bias
    params = weight.numel() + (bias.numel() if bias is not None else 0)
    if kind == "conv":
        groups = component.groups
        m = output.shape[0] * math.prod(output.shape[2:])
        k = weight.shape[1] * math.prod(weight.shape[2:])
        return ComponentCost(name, kind, m, k, weight.shape[0] // groups, groups, weight.numel(), params)
    x = inputs[0]
    return ComponentCost(name, kind, x.numel() // x.shape[-1], x.shape[-1], weight.shape[0], 1,
                         weight.numel(), params)


def _allocation_for(model: nn.Module, names: list[str], allocation: BitAllocation | None) -> BitAllocation:
    if allocation is None:
        allocation = model.allocation if isinstance(model, QuantModel) else BitAllocation.uniform("float", names)
    return allocation.validate(names)


def model_size_mb(model: nn.Module, allocation: BitAllocation | None = None) -> float:
    """Model size in MB (10^6 bytes) at ``allocation`` (default: a QuantModel's own, else float).

    Quantized weights take b_w bits each; every other parameter (biases, norms, embeddings,
    class token, float weights) takes 32 bits.
    """
    base = _base_model(model)
    specs = component_specs(base)
    allocation = _allocation_for(model, [s.name for s in specs], allocation)
    weight_bits = {}
    for spec in specs:
        if spec.kind != "matmul":
            weight = base.get_submodule(spec.name).weight
            weight_bits[id(weight)] = allocation[spec.name].w or FLOAT_BITS
    unique = {id(p): p for p in base.parameters()}
    bits = sum(p.numel() * weight_bits.get(key, FLOAT_BITS) for key, p in unique.items())
    return bits / 8 / 1e6


def bops(model_or_costs: nn.Module | Mapping[str, ComponentCost], allocation: BitAllocation | None = None,
         input_shape: Sequence[int] | None = None, giga: bool = False) -> float:
    """Σ MACs × b_w × b_a over the components (float = 32 bits); GBOPs (10^9) when ``giga``.

    Pass precomputed :func:`component_costs` to price many allocations without re-running the
    forward (then ``allocation`` is required). Per image unless ``input_shape`` says otherwise.
    Patch-wise token groups run part of a GEMM's rows (or columns, or reduction) at other bits;
    their BOPs need the token counts, so pass the (float timm) model for an allocation that has them.
    """
    if isinstance(model_or_costs, Mapping):
        costs = model_or_costs
        if allocation is None:
            raise PMQError("bops(costs, allocation): an allocation is needed when costs are given")
        allocation.validate(costs)
        if allocation.patchwise:
            raise PMQError("bops of a patch-wise allocation needs the token counts: pass the model, "
                           "bops(model, allocation), not its component costs")
    else:
        costs = component_costs(model_or_costs, input_shape)
        allocation = _allocation_for(model_or_costs, list(costs), allocation)
    total = 0
    for name, cost in costs.items():
        bits = allocation[name]
        total += cost.macs * (bits.w or FLOAT_BITS) * (bits.a or FLOAT_BITS)
    if allocation.patchwise:
        if isinstance(model_or_costs, QuantModel):
            raise PMQError("bops of a patch-wise allocation traces the float timm model: pass the model "
                           "that was wrapped (e.g. Experiment.loaded.model), not the QuantModel")
        total += _token_group_bops(model_or_costs, allocation, input_shape)
    return total / 1e9 if giga else float(total)


def _token_group_bops(model: nn.Module, allocation: BitAllocation, input_shape: Sequence[int] | None) -> int:
    """BOPs the token groups add (a negative number: they lower bits): the grouped GEMMs of the
    hardware workload against the same GEMMs without groups (only integer operands are grouped)."""
    from pmq.workload import model_workload  # it builds on this module's component specs

    shape = tuple(input_shape) if input_shape is not None else default_input_shape(model)
    kwargs = {"batch": shape[0], "input_size": tuple(shape[1:])}
    grouped = model_workload(model, allocation, **kwargs)
    plain = model_workload(model, BitAllocation(dict(allocation.bits)), **kwargs)
    return sum(op.bops for op in grouped.ops) - sum(op.bops for op in plain.ops)
