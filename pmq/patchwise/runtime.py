"""Patch-wise inference: per image and per layer, rank tokens and run the less important ones at fewer bits.

Registered with the quantized wrapper on import (:func:`pmq.quant.register_patchwise`) and installed by
``qm.apply(allocation)`` when ``allocation.patchwise`` is set. Each block's attention call
(``scaled_dot_product_attention`` in ``blocks.i.attn``) then runs :class:`LayerPolicy`:

1. as the attention module starts, the rows of ``qkv``'s input get the token bits of the previous
   block's ranking (when ``"qkv"`` is in ``apply_to``);
2. the class-token rows of q·kᵀ at the allocation's bits (on hardware these rows are simply
   computed first, see :mod:`pmq.patchwise.hardware`); their softmax, averaged over heads, is the score of
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

import torch
import torch.nn.functional as F
from torch import Tensor

from pmq.errors import PMQError
from pmq.patchwise.spec import OPERANDS, LayerSetting, PatchwiseSpec, validate_patchwise
from pmq.quant import QuantComponent, QuantModel, apply_mask, register_patchwise

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
    """One block's attention under patch-wise settings (see the module docstring)."""

    def __init__(self, runtime: PatchwiseRuntime, layer: str, index: int, qm: QuantModel,
                 setting: LayerSetting | None, patches: int) -> None:
        self.runtime, self.layer, self.index, self.setting = runtime, layer, index, setting
        apply_to = runtime.spec.apply_to
        self.components: dict[str, tuple[QuantComponent, str]] = {
            operand: (qm.component(f"{layer}.{OPERANDS[operand][0]}"), OPERANDS[operand][1]) for operand in apply_to}
        self.qk, self.av = qm.component(f"{layer}.attn.matmul_qk"), qm.component(f"{layer}.attn.matmul_av")
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

    def enter(self) -> None:
        """As the attention module starts: qkv's input rows at the previous block's ranking."""
        runtime = self.runtime
        if self.index == 0:
            runtime.previous_score = None
        previous = runtime.previous_score
        qkv_groups = None
        if self.active and previous is not None and "qkv" in self.components:
            qkv_groups = assign_groups(previous, self.setting, runtime.prefix)
        self._set("qkv", qkv_groups)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float,
                 is_causal: bool, scale: float | None, enable_gqa: bool) -> Tensor:
        runtime = self.runtime
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        for operand in ("q", "k", "attn", "v"):
            self._set(operand, None)
        logits = self.qk(q * scale, k)  # the plain rows: the class rows are the score's source
        probs = apply_mask(logits, attn_mask, is_causal).softmax(dim=-1)
        score = SCORES[runtime.spec.score](ScoreInputs(probs.detach(), v.detach(), runtime.prefix, runtime.generator))
        runtime.previous_score = score

        groups = assign_groups(score, self.setting, runtime.prefix) if self.active else None
        if runtime.records is not None and groups is not None:
            runtime.records[self.layer] = groups
        for operand in ("q", "k", "attn", "v", "proj", "fc1", "fc2"):
            self._set(operand, groups)
        if groups is not None and any(getattr(self.qk, f"token_bits_{w}") is not None for w in "aw"):
            p = runtime.prefix
            q_bits = self.qk.token_bits_a
            if q_bits is not None:
                self.qk.token_bits_a = q_bits[:, p:]
            rest = self.qk(q[:, :, p:] * scale, k)
            self.qk.token_bits_a = q_bits
            logits = torch.cat([logits[:, :, :p], rest], dim=2)
            probs = apply_mask(logits, attn_mask, is_causal).softmax(dim=-1)
        if dropout_p:
            probs = F.dropout(probs, dropout_p)
        return self.av(probs, v)


def install_patchwise(qm: QuantModel, patchwise: dict) -> PatchwiseRuntime:
    """Install patch-wise inference on a (just reset) QuantModel; registered with and called by ``apply``."""
    spec = validate_patchwise(patchwise, qm.component_names())
    trace = qm.trace
    runtime = PatchwiseRuntime(spec, trace.prefix_tokens, torch.Generator().manual_seed(spec.seed))
    for index, path in enumerate(trace.attention):
        layer = path.removesuffix(".attn")
        qk = trace.components().get(f"{path}.matmul_qk")
        if qk is None or qk.func != "scaled_dot_product_attention" or layer == path:
            if layer in spec.layers:
                raise PMQError(f"patch-wise layer {layer!r}: its attention is not a timm ViT block's "
                               "scaled_dot_product_attention (blocks.i.attn): drop it from the settings")
            continue
        _, tokens, _, _ = trace.attention[path]
        policy = LayerPolicy(runtime, layer, index, qm, spec.layers.get(layer), tokens - trace.prefix_tokens)
        runtime.policies[layer] = policy
        qm.attention_handlers[path] = policy
        qm.enter_hooks[path] = policy.enter
    return runtime


register_patchwise(install_patchwise)
