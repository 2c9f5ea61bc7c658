"""The quantized ViT wrapper: float equivalence, components, bits, calibration, recording."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from pmq.allocation import BitAllocation, Bits
from pmq.errors import PMQError
from pmq.quant import QuantConv2d, QuantLinear, QuantMatMul, calibrate, quantize_model
from pmq.trace import trace_model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_float_path_equals_demo_vit(demo_vit):
    qv = quantize_model(demo_vit)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert _max_diff(qv(x), demo_vit(x)) <= 1e-5


def test_float_path_equals_deit_tiny():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    qv = quantize_model(model)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(qv(x), model(x)) <= 1e-5
    assert len(qv.component_names()) == 1 + 12 * 6 + 1


def test_float_path_honours_qk_norm_and_masks(tiny_vit_args):
    torch.manual_seed(0)
    model = VisionTransformer(**tiny_vit_args, qk_norm=True).eval()
    qv = quantize_model(model)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert _max_diff(qv(x), model(x)) <= 1e-5
        tokens = torch.randn(2, 5, 16)
        mask = torch.rand(5, 5) > 0.3
        mask.fill_diagonal_(True)
        attn = model.blocks[0].attn  # the wrapper passes masks on to the decomposed attention
        q_attn = quantize_model(attn, trace=trace_model(attn, input_size=(5, 16)))
        assert q_attn.component_names() == ["qkv", "matmul_qk", "matmul_av", "proj"]
        for kwargs in ({"attn_mask": mask}, {"attn_mask": torch.randn(5, 5)}, {"is_causal": True}):
            assert _max_diff(q_attn(tokens, **kwargs), attn(tokens, **kwargs)) <= 1e-5


def test_components_named_by_module_path_in_forward_order(demo_vit):
    qv = quantize_model(demo_vit)
    names = qv.component_names()
    assert len(names) == 38
    assert names[:7] == ["patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.matmul_qk",
                         "blocks.0.attn.matmul_av", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]
    assert names[-1] == "head"
    kinds = {type(qv.model.get_submodule(n)) for n in names}
    assert kinds == {QuantConv2d, QuantLinear, QuantMatMul}
    attn = qv.model.blocks[0].attn  # timm's own module, with the two products attached
    assert isinstance(attn.matmul_qk, QuantMatMul) and attn.matmul_qk.transpose_b
    assert isinstance(attn.matmul_av, QuantMatMul) and not attn.matmul_av.transpose_b
    assert qv.state_dict().keys() == {f"model.{k}" for k in demo_vit.state_dict()}


def test_wrapping_copies_and_leaves_the_original_alone(tiny_vit):
    qv = quantize_model(tiny_vit)
    assert isinstance(tiny_vit.blocks[0].attn.qkv, torch.nn.Linear)
    assert qv.model.blocks[0].attn.qkv.weight is not tiny_vit.blocks[0].attn.qkv.weight


def test_a_model_without_an_input_size_needs_one():
    with pytest.raises(PMQError, match="give its input size C,H,W") as exc:
        quantize_model(torch.nn.Linear(3, 3))
    assert exc.value.param == "input_size"
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    qm = quantize_model(model, trace=trace_model(model, input_size=(3,)))
    assert qm.component_names() == ["0", "2"]


def test_bits_change_logits_and_more_bits_stay_closer(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="token")
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        reference = tiny_vit(x)
        errors = {}
        for setting in ("W8A8", "W4A4", "W2A2"):
            qv.apply(BitAllocation.uniform(setting, qv.component_names()))
            errors[setting] = _max_diff(qv(x), reference)
    assert 0 < errors["W8A8"] < errors["W4A4"] < errors["W2A2"]


def test_apply_sets_each_components_own_bits(tiny_vit):
    qv = quantize_model(tiny_vit)
    allocation = BitAllocation.uniform("float", qv.component_names()).replace(
        {"blocks.0.attn.matmul_qk": Bits(w=3, a=5), "blocks.0.mlp.fc1": Bits(w=4, a=None)})
    qv.apply(allocation)
    qk, fc1 = qv.component("blocks.0.attn.matmul_qk"), qv.component("blocks.0.mlp.fc1")
    assert (qk.quantizer_a.bits, qk.quantizer_w.bits) == (5, 3)
    assert (fc1.quantizer_a.bits, fc1.quantizer_w.bits) == (None, 4)
    assert qv.component("head").quantizer_w.bits is None
    assert qv.allocation is allocation
    with pytest.raises(PMQError, match="blocks.7.attn.qkv"):
        qv.apply(BitAllocation({**allocation.bits, "blocks.7.attn.qkv": Bits(8, 8)}))


def test_only_the_quantized_component_changes_the_output(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="token")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        reference = qv(x)
        qv.apply(BitAllocation.uniform("float", qv.component_names()).replace({"head": Bits(2, 8)}))
        features = qv.model.forward_head(qv.model.forward_features(x), pre_logits=True)
        head = qv.model.head
        expected = F.linear(head.quantizer_a(features), head.quantizer_w(head.weight), head.bias)
        assert torch.allclose(qv(x), expected, atol=1e-6)
        assert _max_diff(qv(x), reference) > 0


def test_static_granularity_needs_calibration_and_calibration_keeps_float_exact(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="tensor")
    x = torch.randn(4, 1, 8, 8)
    w8a8 = BitAllocation.uniform("W8A8", qv.component_names())
    with pytest.raises(PMQError, match="calibrate"), torch.no_grad():
        qv.apply(w8a8)(x)
    qv.apply(BitAllocation.uniform("float", qv.component_names()))
    with torch.no_grad():
        before = qv(x)
        seconds = calibrate(qv, torch.randn(24, 1, 8, 8), observer="percentile", batch_size=8)
        assert seconds > 0
        assert torch.equal(qv(x), before)  # float mode: calibration changes nothing
        qv.apply(w8a8)
        assert _max_diff(qv(x), before) < 0.1 * float(before.abs().max())


def test_calibrate_restores_the_allocation_and_rejects_bad_input(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="tensor")
    allocation = BitAllocation.uniform("W4A8", qv.component_names())
    qv.apply(allocation)
    calibrate(qv, torch.randn(4, 1, 8, 8), observer="mse")
    assert qv.allocation is allocation
    assert qv.component("blocks.0.mlp.fc2").quantizer_a.bits == 8
    with pytest.raises(PMQError, match="observer"):
        calibrate(qv, torch.randn(4, 1, 8, 8), observer="banana")
    with pytest.raises(PMQError, match="shape"):
        calibrate(qv, torch.randn(4, 8, 8))


def test_token_granularity_quantizes_each_patch_of_the_image(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="token")
    proj = qv.component("patch_embed.proj")
    proj.quantizer_a.bits = 2
    x = torch.randn(1, 1, 8, 8)
    x[..., :4, :4] *= 100  # one loud patch must not coarsen the grid of the others
    patches = F.unfold(x, 4, stride=4).transpose(1, 2)
    expected = F.fold(proj.quantizer_a.quantize(patches, 2).transpose(1, 2), (8, 8), 4, stride=4)
    with torch.no_grad():
        out = proj(x)
        assert torch.allclose(out, F.conv2d(expected, proj.weight, proj.bias, stride=4), atol=1e-4)


def test_recording_exposes_float_operands_with_gradients(tiny_vit):
    qv = quantize_model(tiny_vit)
    x, y = torch.randn(4, 1, 8, 8, requires_grad=True), torch.tensor([0, 1, 2, 0])
    with qv.recording() as operands:
        loss = F.cross_entropy(qv(x), y)
    assert list(operands) == qv.component_names()
    assert operands["blocks.0.attn.qkv"].w is qv.component("blocks.0.attn.qkv").weight
    qk = operands["blocks.0.attn.matmul_qk"]
    assert qk.a.shape == qk.w.shape == (4, 2, 5, 8)  # q and k: (B, heads, tokens, head dim)
    assert operands["blocks.0.attn.matmul_av"].a.shape == (4, 2, 5, 5)  # attention probabilities
    tensors = [operands[n].a for n in operands] + [operands["blocks.0.attn.matmul_av"].w]
    grads = torch.autograd.grad(loss, tensors)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(c.recording is None for c in qv.components().values())
    with torch.no_grad():
        qv(x)  # not recording any more
    assert operands["blocks.0.attn.qkv"].a.requires_grad


def test_gradients_flow_through_quantized_model(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="token").train()
    qv.apply(BitAllocation.uniform("W4A4", qv.component_names()))
    F.cross_entropy(qv(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 0])).backward()
    assert qv.component("blocks.0.mlp.fc1").weight.grad.abs().sum() > 0


def test_per_row_bits_on_a_component_inside_the_model(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="token")
    x = torch.randn(2, 1, 8, 8)
    fc1 = qv.component("blocks.0.mlp.fc1")
    with torch.no_grad():
        fc1.quantizer_a.bits = torch.full((5,), 8)
        all_high = qv(x)
        fc1.quantizer_a.bits = 8
        assert torch.equal(qv(x), all_high)
        fc1.quantizer_a.bits = torch.tensor([8, 2, 2, 2, 2])  # in the last block only the class
        assert torch.equal(qv(x), all_high)  # token reaches the head: patch rows don't matter
        fc1.quantizer_a.bits = torch.tensor([2, 8, 8, 8, 8])
        assert not torch.equal(qv(x), all_high)


def test_rewrapping_gives_an_independent_float_copy(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="tensor").apply(BitAllocation.uniform("W4A4", [
        *quantize_model(tiny_vit).component_names()]))
    copy = quantize_model(qv)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert _max_diff(copy(x), tiny_vit(x)) <= 1e-5
    assert qv.component("head").quantizer_w.bits == 4


def test_token_calibration_observes_nothing_and_prepares_weight_clipping(tiny_vit):
    qv = quantize_model(tiny_vit, granularity="token", weight_clipping="mse")
    allocation = BitAllocation.uniform("W3A4", qv.component_names())
    calibrate(qv, torch.randn(4, 1, 8, 8), observer="percentile", allocation=allocation)
    assert all(q.observer is None for q in qv.activation_quantizers())
    assert qv.allocation is allocation
    assert 3 in qv.component("blocks.0.mlp.fc1").quantizer_w._clip_cache
