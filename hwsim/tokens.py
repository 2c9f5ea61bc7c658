"""Token-precision capabilities: what an accelerator does for patch-wise token groups, and their area.

A preset's optional ``tokens`` section lists the hardware it has for token groups (absent key = not
built; each key carries its energy and area, with sources). The same workload runs with or without
them; only how its grouped GEMMs and token vector ops are priced changes:

- ``gather_on_chip``: the operand-fetch address generator reads token rows through an index list in
  SRAM (``energy_pj_per_row`` per row fetched that way), so regrouping moves no data;
- ``requant_on_load``: rows are rescaled to their group's bits between SRAM and the array
  (``energy_pj_per_element`` per element fetched at other bits), so no vector pass requantizes
  them; grouped operands stay stored (SRAM, DRAM) at their allocated width;
- ``shared_operand``: the groups of a grouped GEMM run as one loop nest, the array switching precision
  per tile, so the mapper's residency and loop order apply across groups (k / v fetched once per
  block, not once per group) — without it each group combination is a GEMM of its own;
- ``grouped_reduction``: depth groups (attn·v's value rows) accumulate into the same partial sums in
  the output buffer — without it each depth group writes a partial output and the vector unit adds them;
- ``fused_score``: the token score is accumulated in the softmax pass of the class row, so the
  ``token_score`` op reads and writes no DRAM;
- ``subword_vector``: the vector unit runs rows whose output is requantized to few bits (a vector
  op's ``groups``, e.g. the softmax rows of demoted tokens) at sub-word width: ``8 // bits`` elements
  per lane-cycle at 2–4 bits (energy per element likewise divided), full width above.

``regroup`` (gather + requantize q / k / v) then costs: nothing with both gather and requant on chip;
a DMA gather round trip at the allocated width with requant on load only; the vector pass (as on a
plain preset) otherwise.

How a grouped GEMM and the token vector ops are then priced: :mod:`hwsim.token_groups`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hwsim.config import NON_NEGATIVE, Optional
from hwsim.workload import Gemm, VectorOp

CAPABILITIES = ("gather_on_chip", "requant_on_load", "shared_operand", "grouped_reduction", "fused_score",
                "subword_vector")
TOKENS_SCHEMA = {
    "gather_on_chip": Optional({"energy_pj_per_row": NON_NEGATIVE, "area_um2": NON_NEGATIVE}),
    "requant_on_load": Optional({"energy_pj_per_element": NON_NEGATIVE, "area_um2": NON_NEGATIVE}),
    "shared_operand": Optional({"area_um2": NON_NEGATIVE}),
    "grouped_reduction": Optional({"area_um2": NON_NEGATIVE}),
    "fused_score": Optional({"area_um2": NON_NEGATIVE}),
    "subword_vector": Optional({"area_um2": NON_NEGATIVE}),
}
TOKEN_VECTOR_KINDS = ("regroup", "token_score")
UM2_PER_MM2 = 1e6


class Configured(Protocol):
    """What the token capabilities read of an accelerator: its validated config (``hwsim.Accelerator``;
    naming that class here would close an import cycle, as the accelerator's schema includes ours)."""

    config: Mapping[str, Any]


def capabilities(accel: Configured) -> dict[str, dict[str, Any]]:
    """The token capabilities ``accel`` has built (name → its constants); empty for a plain preset."""
    section = accel.config.get("tokens") or {}
    return {name: section[name] for name in CAPABILITIES if section.get(name) is not None}


def area_mm2(accel: Configured) -> float:
    """Silicon the token capabilities add (their ``area_um2`` summed)."""
    return sum(cap["area_um2"] for cap in capabilities(accel).values()) / UM2_PER_MM2


def handles(op: Gemm | VectorOp, accel: Configured) -> bool:
    """Whether the token capabilities price ``op``: on a token-aware preset, a GEMM with token groups at
    other bits than its own, or a token vector op."""
    caps = capabilities(accel)
    if not caps:
        return False
    if isinstance(op, Gemm):
        return any(bits != op.bits_a for _, bits in op.row_groups) or \
            any(bits != op.bits_b for _, bits in op.col_groups + op.depth_groups)
    return op.kind in TOKEN_VECTOR_KINDS or ("subword_vector" in caps and subword_factor(op) < 1)


def subword_factor(op: VectorOp) -> float:
    """Lane-cycles per element of a vector op with row groups on a sub-word vector unit, relative to
    full width: the mean of ``1 / (8 // bits)`` over its elements (``8 // bits`` lanes at 2–4 bits)."""
    if not op.groups:
        return 1.0
    return sum(size / max(1, 8 // max(bits, 2)) for size, bits in op.groups) / op.elements


