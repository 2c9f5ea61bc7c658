"""Trace → hwsim workload on the tiny ViT: every op and shape counted by hand from the architecture."""

from __future__ import annotations

import hwsim
from pmq.allocation import BitAllocation, Bits
from pmq.defaults import FLOAT_BITS_ON_HARDWARE
from pmq.trace import trace_model

# 8×8 image, 4×4 patches: P = 4 patches + class token = 5 tokens; dim 16, 2 heads of 8, MLP 32, 3 classes
P, N, D, H, HD, MLP, CLASSES = 4, 5, 16, 2, 8, 32, 3


def expected_ops(batch: int) -> list[tuple]:
    """(name, kind, m, k, n, count) per GEMM and (name, kind, elements) per vector op, in forward order."""
    rows = batch * N
    return [
        ("patch_embed.proj", "linear", batch * P, 1 * 4 * 4, D, 1),
        ("add", "add", rows * D),  # + position embedding (class token prepended), at the model's top level
        ("blocks.0.norm1", "layernorm", rows * D),
        ("blocks.0.attn.qkv", "linear", rows, D, 3 * D, 1),
        ("blocks.0.attn.matmul_qk", "matmul", N, HD, N, batch * H),
        ("blocks.0.attn.softmax", "softmax", batch * H * N * N),
        ("blocks.0.attn.matmul_av", "matmul", N, N, HD, batch * H),
        ("blocks.0.attn.proj", "linear", rows, D, D, 1),
        ("blocks.0.add", "add", rows * D),
        ("blocks.0.norm2", "layernorm", rows * D),
        ("blocks.0.mlp.fc1", "linear", rows, D, MLP, 1),
        ("blocks.0.mlp.act", "gelu", rows * MLP),
        ("blocks.0.mlp.fc2", "linear", rows, MLP, D, 1),
        ("blocks.0.add_1", "add", rows * D),
        ("norm", "layernorm", rows * D),
        ("head", "linear", batch, D, CLASSES, 1),  # the class token only
    ]


def shape(op: hwsim.Gemm | hwsim.VectorOp) -> tuple:
    if isinstance(op, hwsim.Gemm):
        return op.name, op.kind, op.m, op.k, op.n, op.count
    return op.name, op.kind, op.elements


def test_ops_and_shapes_follow_the_forward_pass(tiny_vit):
    for batch in (1, 3):
        trace = trace_model(tiny_vit, batch=batch)
        workload = trace.workload(BitAllocation.uniform("W4A8", trace.component_names))
        assert [shape(op) for op in workload.ops] == expected_ops(batch)
        # a chain: each op waits for the one before it
        assert [list(workload.graph.predecessors(op.name)) for op in workload.ops] == \
            [[]] + [[op.name] for op in workload.ops[:-1]]


def test_gemms_are_the_components_at_their_allocated_bits(tiny_vit):
    trace = trace_model(tiny_vit)
    names = trace.component_names
    allocation = BitAllocation.uniform("W4A8", names).replace(
        {"blocks.0.attn.matmul_qk": Bits(2, 6), "head": Bits(None, None)})
    gemms = {op.name: op for op in trace.workload(allocation).ops if isinstance(op, hwsim.Gemm)}
    assert list(gemms) == names  # one GEMM per component, named after it: cost tables map one-to-one
    assert (gemms["blocks.0.mlp.fc1"].bits_a, gemms["blocks.0.mlp.fc1"].bits_b) == (8, 4)
    assert (gemms["blocks.0.attn.matmul_qk"].bits_a, gemms["blocks.0.attn.matmul_qk"].bits_b) == (6, 2)
    assert (gemms["head"].bits_a, gemms["head"].bits_b) == (FLOAT_BITS_ON_HARDWARE, FLOAT_BITS_ON_HARDWARE)
    macs = sum(op.m * op.k * op.n * op.count for op in gemms.values())
    assert macs == 4 * 16 * 16 + 5 * 16 * 48 + 2 * 5 * 8 * 5 + 2 * 5 * 5 * 8 + 5 * 16 * 16 + 5 * 16 * 32 \
        + 5 * 32 * 16 + 16 * 3
