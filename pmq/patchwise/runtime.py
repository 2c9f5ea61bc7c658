"""Patch-wise inference: per image and per layer, rank tokens and run the less important ones at fewer bits.

Installed on a :class:`~pmq.quant.QuantViT` by ``qv.apply(allocation)`` when ``allocation.patchwise``
is set. Each block's attention then runs :class:`LayerPolicy` instead of its own forward:

1. q, k, v from ``qkv`` (its input rows at the token bits of the previous block's ranking when
   ``"qkv"`` is in ``apply_to``);
2. the class-token rows of q·kᵀ at the allocation's bits (on hardware these rows are simply
   computed first, see :mod:`pmq.workload`); their softmax, averaged over heads, is the score of
   every patch token (``cls_attention``: how much the class token, which the head reads, attends
   to it);
3. per image, the top ``ceil(ρ·P)`` patch tokens (plus the class token) keep the high level, the
   rest drop to the lower levels: the rows of Q, K, the attention probabilities and V (and the
   inputs of proj / fc1 / fc2 when asked) are fake-quantized per token at their group's bits;
4. the remaining q·kᵀ rows, softmax, attn·v and proj as usual.

A block whose setting changes no bits (ρ = 1, or not listed) runs the plain forward's exact
operations, so the plain allocation's logits are reproduced bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pmq.patchwise.spec import OPERANDS, LayerSetting, PatchwiseSpec, validate_patchwise
from pmq.quant.modules import QuantAttention, QuantComponent, _apply_mask

if TYPE_CHECKING:
    from pmq.quant.vit import QuantViT

Scorer = Callable[["ScoreInputs"], Tensor]


@dataclass
class ScoreInputs:
    """What a score may look at, per block: the plain attention probabilities (B, H, N, N), v
    (B, H, N, hd), the number of prefix tokens and a seeded generator."""

    probs: Tensor
    v: Tensor
    prefix: int
    generator: torch.Generator


def _cls_attention(inputs: ScoreInputs) -> Tensor:
    """Attention the class token pays each patch token, averaged over heads: (B, P).

    Without a class token (global-pool models): attention each token receives, averaged over
    queries and heads."""
    if inputs.prefix:
        return inputs.probs[:, :, 0, inputs.prefix:].mean(dim=1)
    return inputs.probs.mean(dim=(1, 2))


def _value_norm(inputs: ScoreInputs) -> Tensor:
    """A proxy that needs no attention row: the L2 norm of each token's value vector, summed over heads."""
    return inputs.v[:, :, inputs.prefix:].norm(dim=-1).sum(dim=1)


def _random(inputs: ScoreInputs) -> Tensor:
    """The baseline: a uniformly random ranking per image."""
    batch, patches = inputs.probs.shape[0], inputs.probs.shape[-1] - inputs.prefix
    return torch.rand(batch, patches, generator=inputs.generator).to(inputs.probs.device)


SCORES: dict[str, Scorer] = {"cls_attention": _cls_attention, "value_norm": _value_norm, "random": _random}


def assign_groups(score: Tensor, setting: LayerSetting, prefix: int) -> Tensor:
    """Group index per token, (B, prefix + P): prefix tokens 0, patch tokens by descending score."""
    batch, patches = score.shape
    sizes = torch.tensor(setting.group_sizes(patches), device=score.device)
    by_rank = torch.repeat_interleave(torch.arange(len(sizes), device=score.device), sizes)
    order = score.argsort(dim=1, descending=True, stable=True)
    groups = torch.empty_like(order).scatter_(1, order, by_rank.expand(batch, patches))
    return torch.cat([groups.new_zeros(batch, prefix), groups], dim=1)


def token_bits(groups: Tensor | None, setting: LayerSetting, base: int | Tensor | None) -> Tensor | None:
    """Bits per token of an operand allocated ``base`` bits, or ``None`` where no token changes."""
    if groups is None or not isinstance(base, int):
        return None
    levels = torch.tensor(setting.operand_levels(base), device=groups.device)
    bits = levels[groups]
    return None if bool((bits == base).all()) else bits


@dataclass
class PatchwiseRuntime:
    """The installed state: the spec, the last block's score (for the next qkv) and optional records."""

    spec: PatchwiseSpec
    prefix: int
    generator: torch.Generator
    previous_score: Tensor | None = None
    records: dict[str, Tensor] | None = None  # layer → group index (B, N) of the last forward, when recording
    policies: dict[str, LayerPolicy] = field(default_factory=dict)


class LayerPolicy:
    """One block's attention forward under patch-wise settings (see the module docstring)."""

    def __init__(self, runtime: PatchwiseRuntime, layer: str, index: int, block: torch.nn.Module,
                 setting: LayerSetting | None, patches: int) -> None:
        self.runtime, self.layer, self.index, self.setting = runtime, layer, index, setting
        apply_to = runtime.spec.apply_to
        self.components: dict[str, tuple[QuantComponent, str]] = {
            operand: (block.get_submodule(OPERANDS[operand][0]), OPERANDS[operand][1]) for operand in apply_to}
        # a setting that changes no operand's bits runs the plain forward's exact operations
        self.active = setting is not None and any(setting.changes(self._base(o), patches) for o in apply_to)

    def _base(self, operand: str) -> int | None:
        component, which = self.components[operand]
        bits = (component.quantizer_a if which == "a" else component.quantizer_w).bits
        return bits if isinstance(bits, int) else None

    def _set(self, operand: str, groups: Tensor | None) -> None:
        if operand not in self.components:
            return
        component, which = self.components[operand]
        bits = token_bits(groups, self.setting, self._base(operand)) if self.setting is not None else None
        setattr(component, "token_bits_a" if which == "a" else "token_bits_w", bits)

    def __call__(self, attn: QuantAttention, x: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
        runtime = self.runtime
        if self.index == 0:
            runtime.previous_score = None
        previous = runtime.previous_score
        qkv_groups = None
        if self.active and previous is not None and "qkv" in self.components:
            qkv_groups = assign_groups(previous, self.setting, runtime.prefix)
        self._set("qkv", qkv_groups)

        B, N, _ = x.shape
        gate = attn.gate(x).sigmoid() if attn.gate is not None else None
        qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        for operand in ("q", "k", "attn", "v"):
            self._set(operand, None)
        logits = attn.matmul_qk(q * attn.scale, k)  # the plain rows: the class rows are the score's source
        probs = _apply_mask(logits, attn_mask, is_causal).softmax(dim=-1)
        score = SCORES[runtime.spec.score](ScoreInputs(probs.detach(), v.detach(), runtime.prefix, runtime.generator))
        runtime.previous_score = score

        groups = assign_groups(score, self.setting, runtime.prefix) if self.active else None
        if runtime.records is not None and groups is not None:
            runtime.records[self.layer] = groups
        for operand in ("q", "k", "attn", "v", "proj", "fc1", "fc2"):
            self._set(operand, groups)
        if groups is not None and any(getattr(attn.matmul_qk, f"token_bits_{w}") is not None for w in "aw"):
            p = runtime.prefix
            q_bits = attn.matmul_qk.token_bits_a
            if q_bits is not None:
                attn.matmul_qk.token_bits_a = q_bits[:, p:]
            rest = attn.matmul_qk(q[:, :, p:] * attn.scale, k)
            attn.matmul_qk.token_bits_a = q_bits
            logits = torch.cat([logits[:, :, :p], rest], dim=2)
            probs = _apply_mask(logits, attn_mask, is_causal).softmax(dim=-1)
        out = attn.matmul_av(attn.attn_drop(probs), v)
        out = attn.norm(out.transpose(1, 2).reshape(B, N, attn.attn_dim))
        if gate is not None:
            out = out * gate
        return attn.proj_drop(attn.proj(out))


def prefix_tokens(model: torch.nn.Module) -> int:
    """Tokens before the patches (class / distillation / register tokens); they always keep high bits."""
    return int(getattr(model, "num_prefix_tokens", 1))


def install_patchwise(qv: QuantViT, patchwise: dict) -> PatchwiseRuntime | None:
    """Install (or, for an empty dict, remove) patch-wise inference on a QuantViT; called by ``apply``."""
    model = qv.model
    for component in qv.components().values():
        component.token_bits_a = component.token_bits_w = None
    for block in model.blocks:
        block.attn.patchwise = None
    spec = validate_patchwise(patchwise, qv.component_names())
    if spec is None:
        return None
    runtime = PatchwiseRuntime(spec, prefix_tokens(model), torch.Generator().manual_seed(spec.seed))
    for index, block in enumerate(model.blocks):
        layer = f"blocks.{index}"
        policy = LayerPolicy(runtime, layer, index, block, spec.layers.get(layer), model.patch_embed.num_patches)
        runtime.policies[layer] = policy
        block.attn.patchwise = policy
    return runtime
