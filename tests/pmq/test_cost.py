"""MACs, BOPs and model size against hand counts on a tiny ViT."""

from __future__ import annotations

import pytest

from pmq.allocation import FLOAT, BitAllocation, Bits
from pmq.cost import bops, component_costs, model_size_mb
from pmq.errors import PMQError
from pmq.quant import quantize_vit

# Tiny ViT: 8×8 grey image, 4×4 patches → 4 patches + class token = 5 tokens; dim 16, 2 heads of 8,
# MLP 32, 3 classes. (m, k, n, count) per component for one image:
HAND = {
    "patch_embed.proj": (4, 16, 16, 1),
    "blocks.0.attn.qkv": (5, 16, 48, 1),
    "blocks.0.attn.matmul_qk": (5, 8, 5, 2),
    "blocks.0.attn.matmul_av": (5, 5, 8, 2),
    "blocks.0.attn.proj": (5, 16, 16, 1),
    "blocks.0.mlp.fc1": (5, 16, 32, 1),
    "blocks.0.mlp.fc2": (5, 32, 16, 1),
    "head": (1, 16, 3, 1),
}
MACS = {name: m * k * n * c for name, (m, k, n, c) in HAND.items()}
WEIGHTS = {"patch_embed.proj": 256, "blocks.0.attn.qkv": 768, "blocks.0.attn.proj": 256,
           "blocks.0.mlp.fc1": 512, "blocks.0.mlp.fc2": 512, "head": 48}
ALL_PARAMS = (256 + 16  # patch_embed.proj weight + bias
              + 16 + 5 * 16  # class token, position embedding
              + 3 * 32  # norm1, norm2, final norm (weight + bias)
              + 768 + 48 + 256 + 16  # qkv, proj
              + 512 + 32 + 512 + 16  # fc1, fc2
              + 48 + 3)  # head


def test_component_costs_match_hand_counts(tiny_vit):
    costs = component_costs(tiny_vit)
    assert list(costs) == list(HAND)
    for name, (m, k, n, count) in HAND.items():
        cost = costs[name]
        assert (cost.m, cost.k, cost.n, cost.count) == (m, k, n, count), name
        assert cost.macs == MACS[name]
        assert cost.weight_params == WEIGHTS.get(name, 0)
    assert sum(p.numel() for p in tiny_vit.parameters()) == ALL_PARAMS


def test_costs_scale_with_batch_and_accept_a_quant_vit(tiny_vit):
    costs = component_costs(quantize_vit(tiny_vit), input_shape=(3, 1, 8, 8))
    assert costs["blocks.0.attn.matmul_qk"].count == 6
    assert sum(c.macs for c in costs.values()) == 3 * sum(MACS.values())
    with pytest.raises(PMQError, match="input shape"):
        component_costs(tiny_vit, input_shape=(1, 8, 8))


def test_bops_is_macs_times_operand_bits(tiny_vit):
    names = list(HAND)
    assert bops(tiny_vit) == sum(MACS.values()) * 32 * 32
    w4a8 = BitAllocation.uniform("W4A8", names)
    assert bops(tiny_vit, w4a8) == sum(MACS.values()) * 4 * 8
    mixed = w4a8.replace({"blocks.0.attn.matmul_qk": Bits(3, 5), "head": Bits(None, 8)})
    expected = (sum(MACS.values()) - MACS["blocks.0.attn.matmul_qk"] - MACS["head"]) * 32 \
        + MACS["blocks.0.attn.matmul_qk"] * 15 + MACS["head"] * 32 * 8
    assert bops(tiny_vit, mixed) == expected
    assert bops(component_costs(tiny_vit), mixed, giga=True) == pytest.approx(expected / 1e9)
    with pytest.raises(PMQError, match="allocation"):
        bops(component_costs(tiny_vit))


def test_model_size_counts_quantized_weights_at_their_bits(tiny_vit):
    names = list(HAND)
    assert model_size_mb(tiny_vit) == pytest.approx(ALL_PARAMS * 4 / 1e6)
    weights = sum(WEIGHTS.values())
    w4 = BitAllocation.uniform("W4A8", names)
    assert model_size_mb(tiny_vit, w4) == pytest.approx((weights * 4 + (ALL_PARAMS - weights) * 32) / 8 / 1e6)
    mixed = w4.replace({"head": FLOAT, "blocks.0.attn.matmul_qk": Bits(2, 2)})  # matmuls hold no weights
    expected_bits = (weights - 48) * 4 + (ALL_PARAMS - weights + 48) * 32
    assert model_size_mb(tiny_vit, mixed) == pytest.approx(expected_bits / 8 / 1e6)
    qv = quantize_vit(tiny_vit).apply(mixed)
    assert model_size_mb(qv) == model_size_mb(tiny_vit, mixed)
    with pytest.raises(PMQError, match="unknown component"):
        model_size_mb(tiny_vit, BitAllocation({**mixed.bits, "blocks.3.attn.qkv": FLOAT}))


def test_costs_of_a_quantized_uncalibrated_model_use_a_float_copy(tiny_vit):
    qv = quantize_vit(tiny_vit, granularity="tensor")
    qv.apply(BitAllocation.uniform("W4A4", qv.component_names()))  # would need calibration to run
    assert sum(c.macs for c in component_costs(qv).values()) == sum(MACS.values())
    assert bops(qv) == sum(MACS.values()) * 16


def test_bops_of_token_groups_match_a_hand_count(tiny_vit):
    """W8A8, blocks.0 at ρ = 0.5 over levels 8/4 on the q, k, v and attention-probability rows: of
    the 4 patches, 2 keep 8 bits and 2 get 4; the class token keeps 8 (its q·kᵀ row runs first, at 8)."""
    names = list(HAND)
    allocation = BitAllocation(BitAllocation.uniform("W8A8", names).bits,
                               {"layers": {"blocks.0": {"rho": 0.5, "levels": [8, 4]}}})
    rows_x_cols = lambda a, b: sum(ra * rb * ba * bb for ra, ba in a for rb, bb in b)  # noqa: E731
    qk = 1 * 8 * 5 * 2 * 64 + 8 * 2 * rows_x_cols([(2, 8), (2, 4)], [(3, 8), (2, 4)])  # class row + patch rows
    av = 8 * 2 * rows_x_cols([(3, 8), (2, 4)], [(3, 8), (2, 4)])  # probability rows × value rows (the reduction)
    plain = sum(MACS.values()) * 64
    expected = plain - 64 * (MACS["blocks.0.attn.matmul_qk"] + MACS["blocks.0.attn.matmul_av"]) + qk + av
    assert expected < plain
    assert bops(tiny_vit, allocation) == expected
    with pytest.raises(PMQError, match="not the QuantViT"):
        bops(quantize_vit(tiny_vit), allocation)
    no_change = BitAllocation(allocation.bits, {"layers": {"blocks.0": {"rho": 1.0, "levels": [8, 4]}}})
    assert bops(tiny_vit, no_change) == plain
    with pytest.raises(PMQError, match="pass the model"):
        bops(component_costs(tiny_vit), allocation)
