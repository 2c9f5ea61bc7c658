"""Patch-wise settings on hardware: the grouped GEMMs and vector ops a layer's token groups need.

``pmq.trace.ModelTrace.workload`` hands each allocation's patch-wise settings here; they turn a layer's
token-row GEMMs into grouped GEMMs (``hwsim.Gemm`` row / col / depth groups, each group at its
own bits) and add the work of ranking and regrouping tokens on the vector unit:

- ``blocks.i.attn.matmul_qk.class_rows``: the class-token rows of q·kᵀ at the allocation's bits,
  computed first (their softmax is the score); ``blocks.i.attn.matmul_qk`` then covers the other
  rows, grouped by query bits (rows) and key bits (columns);
- ``blocks.i.attn.token_score`` (``token_score``): average the class row over heads and rank the
  patch tokens (H·P accumulates + P·⌈log₂P⌉ compare steps per image);
- ``blocks.i.attn.regroup`` (``regroup``): gather the q / k / v rows into their groups and
  requantize each at its group's bits (every element of each grouped operand once). Rows the
  vector unit produces itself (softmax → attention probabilities, LayerNorm → qkv / fc1 inputs,
  GELU → fc2 input) and attn·v's output (already in group order, → proj) are written in group
  order at their group's bits as part of that op: no extra pass;
- the softmax carries the attention-probability rows' groups (``hwsim.VectorOp.groups``): a preset
  with a sub-word vector unit runs demoted rows at their own width, any other ignores them;
- attn·v runs grouped by probability rows and by value rows (its reduction; the partial outputs
  are added by the GEMM's merge, see ``hwsim.Gemm.merge_op``); qkv / proj / fc1 / fc2 rows when
  ``apply_to`` names them (qkv ranked by the previous block's score,
  ``blocks.i.attn.qkv.token_score``).

A layer whose setting changes no bits (ρ = 1) emits exactly the plain ops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import hwsim
from pmq.allocation import Bits
from pmq.patchwise.spec import OPERANDS, LayerSetting, PatchwiseSpec


def _groups(sizes: list[int], bits: tuple[int, ...] | None, base: int, scale: int = 1) -> tuple[tuple[int, int], ...]:
    """(rows, bits) groups of an operand, equal neighbours merged and empty ones dropped; () if uniform at base."""
    if bits is None:
        return ()
    merged: list[list[int]] = []
    for size, b in zip(sizes, bits, strict=True):
        if size and merged and merged[-1][1] == b:
            merged[-1][0] += size * scale
        elif size:
            merged.append([size * scale, b])
    return () if len(merged) == 1 and merged[0][1] == base else tuple(map(tuple, merged))


def patchwise_ops(ops: list[hwsim.Gemm | hwsim.VectorOp], spec: PatchwiseSpec,
                  attention: dict[str, tuple[int, int, int, int]], prefix: int,
                  bits_of: Callable[[str], Bits]) -> list[hwsim.Gemm | hwsim.VectorOp]:
    """Rewrite the ops of every layer whose setting changes some bits (see the module docstring).

    ``attention`` maps ``blocks.i.attn`` to (batch, tokens, heads, head_dim); ``bits_of`` gives a
    component's allocated bits."""
    out: list[hwsim.Gemm | hwsim.VectorOp] = []
    for op in ops:
        layer = ".".join(op.name.split(".")[:2])
        setting, shape = spec.layers.get(layer), attention.get(f"{layer}.attn")
        if setting is None or shape is None:
            out.append(op)
        elif isinstance(op, hwsim.VectorOp):
            out.append(_LayerOps(spec, setting, layer, shape, prefix, bits_of).softmax(op))
        else:
            out += _LayerOps(spec, setting, layer, shape, prefix, bits_of).rewrite(op)
    return out


@dataclass
class _LayerOps:
    """One layer's token groups, and how each of its GEMMs runs with them."""

    spec: PatchwiseSpec
    setting: LayerSetting
    layer: str
    shape: tuple[int, int, int, int]
    prefix: int
    bits_of: Callable[[str], Bits]

    def bits(self, operand: str) -> int | None:
        component, which = OPERANDS[operand]
        allocated = self.bits_of(f"{self.layer}.{component}")
        return allocated.a if which == "a" else allocated.w

    def changes(self, operand: str) -> bool:
        patches = self.shape[1] - self.prefix
        return operand in self.spec.apply_to and self.setting.changes(self.bits(operand), patches)

    def groups(self, operand: str, with_prefix: bool, scale: int = 1) -> tuple[tuple[int, int], ...]:
        """(rows, bits) groups of an operand's token rows, or () when it runs plain."""
        if not self.changes(operand):
            return ()
        sizes = list(self.setting.group_sizes(self.shape[1] - self.prefix))
        if with_prefix:
            sizes[0] += self.prefix
        return _groups(sizes, self.setting.operand_levels(self.bits(operand)), self.bits(operand), scale)

    def softmax(self, op: hwsim.VectorOp) -> hwsim.VectorOp:
        """The softmax with its rows grouped by the bits their probabilities are requantized to (the
        ``attn`` operand's groups); other vector ops unchanged."""
        if op.name != f"{self.layer}.attn.softmax":
            return op
        batch, tokens, heads, _ = self.shape
        return dataclasses.replace(op, groups=self.groups("attn", with_prefix=True, scale=batch * heads * tokens))

    def score(self, name: str) -> hwsim.VectorOp:
        batch, tokens, heads, _ = self.shape
        return hwsim.VectorOp(name, "token_score", _score_elements(batch, heads, tokens - self.prefix))

    def rewrite(self, op: hwsim.Gemm) -> list[hwsim.Gemm | hwsim.VectorOp]:
        if not any(self.changes(o) for o in self.spec.apply_to):
            return [op]
        batch, tokens, heads, head_dim = self.shape
        part = op.name[len(self.layer) + 1:]
        if part in _LINEAR_OPERAND:
            row_groups = self.groups(_LINEAR_OPERAND[part], with_prefix=True, scale=batch)
            if part != "attn.qkv" or not row_groups:
                return [dataclasses.replace(op, row_groups=row_groups)]
            if self.layer == "blocks.0":  # no earlier block ranks its rows: plain
                return [op]
            return [self.score(f"{op.name}.token_score"), dataclasses.replace(op, row_groups=row_groups)]
        if part == "attn.matmul_qk":
            q_groups, k_groups = self.groups("q", with_prefix=False), self.groups("k", with_prefix=True)
            ops: list[hwsim.Gemm | hwsim.VectorOp] = []
            if (q_groups or k_groups) and self.prefix:
                ops.append(dataclasses.replace(op, name=f"{op.name}.class_rows", m=self.prefix))
            if any(self.changes(o) for o in self.spec.apply_to if o != "qkv"):  # this layer's own ranking
                ops.append(self.score(f"{self.layer}.attn.token_score"))
            regrouped = sum(self.changes(o) for o in ("q", "k", "v")) * batch * tokens * heads * head_dim
            if regrouped:
                ops.append(hwsim.VectorOp(f"{self.layer}.attn.regroup", "regroup", regrouped))
            if q_groups or k_groups:
                ops.append(dataclasses.replace(op, m=op.m - self.prefix, row_groups=q_groups, col_groups=k_groups))
            else:
                ops.append(op)
            return ops
        if part == "attn.matmul_av":
            return [dataclasses.replace(op, row_groups=self.groups("attn", with_prefix=True),
                                        depth_groups=self.groups("v", with_prefix=True))]
        return [op]


_LINEAR_OPERAND = {"attn.qkv": "qkv", "attn.proj": "proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}


def _score_elements(batch: int, heads: int, patches: int) -> int:
    """Head average of the class row (H·P accumulates) plus a top-k sort (P·⌈log₂P⌉ compare steps), per image."""
    return batch * (heads * patches + patches * max(1, math.ceil(math.log2(max(patches, 2)))))
