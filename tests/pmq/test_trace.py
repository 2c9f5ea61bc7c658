"""The one tracer: hand counts, FlopCounterMode agreement on timm models, size/BOPs/workload from one
trace, quantized float equivalence on any model, user modules and bad input."""

from __future__ import annotations

import textwrap

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import accelerators
import hwsim
from pmq.allocation import FLOAT, BitAllocation, Bits
from pmq.cli import main
from pmq.errors import PMQError
from pmq.quant import quantize_model
from pmq.trace import TracedVector, size_mb, trace_model

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
VECTORS = {"add": ("elementwise", 80), "blocks.0.norm1": ("norm", 80), "blocks.0.attn.softmax": ("softmax", 50),
           "blocks.0.add": ("elementwise", 80), "blocks.0.norm2": ("norm", 80),
           "blocks.0.mlp.act": ("activation", 160), "blocks.0.add_1": ("elementwise", 80), "norm": ("norm", 80)}
"""Position-embedding add, the block's norms, softmax, GELU and two residual adds, the final norm."""


def test_trace_matches_hand_counts(tiny_vit):
    trace = trace_model(tiny_vit)
    assert trace.component_names == list(HAND)
    for name, (m, k, n, count) in HAND.items():
        op = trace.components()[name]
        assert (op.m, op.k, op.n, op.count) == (m, k, n, count), name
        assert op.weight_params == WEIGHTS.get(name, 0)
    assert trace.macs == sum(MACS.values())
    assert trace.params_total == ALL_PARAMS
    assert {op.name: (op.kind, op.elements) for op in trace.ops if isinstance(op, TracedVector)} == VECTORS
    assert trace.attention == {"blocks.0.attn": (1, 5, 2, 8)} and trace.prefix_tokens == 1
    conv = trace.components()["patch_embed.proj"].conv
    assert (conv.kernel, conv.stride, conv.in_channels, conv.out_channels, conv.input_hw) == ((4, 4), (4, 4), 1, 16, (8, 8))


def test_counts_scale_with_batch(tiny_vit):
    trace = trace_model(tiny_vit, batch=3)
    assert trace.components()["blocks.0.attn.matmul_qk"].count == 6
    assert trace.macs == 3 * sum(MACS.values())
    with pytest.raises(PMQError, match="positive sizes"):
        trace_model(tiny_vit, input_size=(1, 0, 8))


def test_bops_are_macs_times_operand_bits_with_float_at_16(tiny_vit):
    trace = trace_model(tiny_vit)
    names = list(HAND)
    assert trace.bops() == sum(MACS.values()) * 16 * 16
    assert trace.bops(BitAllocation.uniform("W4A8", names)) == sum(MACS.values()) * 4 * 8
    mixed = BitAllocation.uniform("W4A8", names).replace({"blocks.0.attn.matmul_qk": Bits(3, 5), "head": Bits(None, 8)})
    expected = (sum(MACS.values()) - MACS["blocks.0.attn.matmul_qk"] - MACS["head"]) * 32 \
        + MACS["blocks.0.attn.matmul_qk"] * 15 + MACS["head"] * 16 * 8
    assert trace.bops(mixed) == expected


def test_all_float_bops_are_one_number_in_evaluate_and_simulate(tiny_vit):
    trace = trace_model(tiny_vit)
    simulated = hwsim.simulate(trace.workload(), accelerators.load("bitfusion"))
    assert simulated.bops == trace.bops() == sum(MACS.values()) * 16 * 16


def test_model_size_counts_quantized_weights_at_their_bits(tiny_vit):
    trace, names = trace_model(tiny_vit), list(HAND)
    assert size_mb(trace) == pytest.approx(ALL_PARAMS * 4 / 1e6)
    weights = sum(WEIGHTS.values())
    w4 = BitAllocation.uniform("W4A8", names)
    assert size_mb(trace, w4) == pytest.approx((weights * 4 + (ALL_PARAMS - weights) * 32) / 8 / 1e6)
    mixed = w4.replace({"head": FLOAT, "blocks.0.attn.matmul_qk": Bits(2, 2)})  # matmuls hold no weights
    assert size_mb(trace, mixed) == pytest.approx(((weights - 48) * 4 + (ALL_PARAMS - weights + 48) * 32) / 8 / 1e6)
    with pytest.raises(PMQError, match="unknown component"):
        size_mb(trace, BitAllocation({**mixed.bits, "blocks.3.attn.qkv": FLOAT}))


def test_bops_of_token_groups_match_a_hand_count(tiny_vit):
    """W8A8, blocks.0 at ρ = 0.5 over levels 8/4 on the q, k, v and attention-probability rows: of
    the 4 patches, 2 keep 8 bits and 2 get 4; the class token keeps 8 (its q·kᵀ row runs first, at 8)."""
    trace, names = trace_model(tiny_vit), list(HAND)
    allocation = BitAllocation(BitAllocation.uniform("W8A8", names).bits,
                               {"layers": {"blocks.0": {"rho": 0.5, "levels": [8, 4]}}})
    rows_x_cols = lambda a, b: sum(ra * rb * ba * bb for ra, ba in a for rb, bb in b)  # noqa: E731
    qk = 1 * 8 * 5 * 2 * 64 + 8 * 2 * rows_x_cols([(2, 8), (2, 4)], [(3, 8), (2, 4)])  # class row + patch rows
    av = 8 * 2 * rows_x_cols([(3, 8), (2, 4)], [(3, 8), (2, 4)])  # probability rows × value rows (the reduction)
    plain = sum(MACS.values()) * 64
    expected = plain - 64 * (MACS["blocks.0.attn.matmul_qk"] + MACS["blocks.0.attn.matmul_av"]) + qk + av
    assert expected < plain
    assert trace.bops(allocation) == expected
    no_change = BitAllocation(allocation.bits, {"layers": {"blocks.0": {"rho": 1.0, "levels": [8, 4]}}})
    assert trace.bops(no_change) == plain


def test_patchwise_is_refused_without_a_class_token(tiny_vit_args):
    model = VisionTransformer(**tiny_vit_args, class_token=False, global_pool="avg").eval()
    trace = trace_model(model)
    assert trace.prefix_tokens == 0 and trace.attention
    allocation = BitAllocation(BitAllocation.uniform("W8A8", trace.component_names).bits,
                               {"layers": {"blocks.0": {"rho": 0.5, "levels": [8, 4]}}})
    with pytest.raises(PMQError, match="needs a ViT with a class token; VisionTransformer has no class token"):
        trace.workload(allocation)
    with pytest.raises(PMQError, match="no class token"):
        quantize_model(model, trace=trace).apply(allocation)


def _flop_counter_macs(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name", [
    "resnet18", "convnext_atto",
    pytest.param("deit_small_patch16_224", marks=pytest.mark.slow),
    pytest.param("swin_tiny_patch4_window7_224", marks=pytest.mark.slow),
    pytest.param("vit_base_patch16_224", marks=pytest.mark.slow),
])
def test_timm_models_macs_match_flop_counter_and_quantize_to_the_same_logits(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    trace = trace_model(model, name=name)
    assert trace.input_shape == (1, *model.pretrained_cfg["input_size"])
    assert trace.macs == pytest.approx(_flop_counter_macs(model, trace.input_shape), rel=5e-3)
    qm = quantize_model(model, trace=trace)
    x = torch.randn(1, *trace.input_shape[1:])
    with torch.no_grad():
        reference = model(x)
        assert float((qm(x) - reference).abs().max()) <= 1e-5
        quantized = qm.apply(BitAllocation.uniform("W4A4", qm.component_names()))(x)
    assert torch.isfinite(quantized).all() and float((quantized - reference).abs().max()) > 1e-3


def test_an_op_the_tracer_cannot_price_is_named_with_its_module():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ConvTranspose2d(4, 4, 2, stride=2))
    with pytest.raises(PMQError, match=r"op 'conv_transpose2d' in module '1' \(ConvTranspose2d\) cannot be priced"):
        trace_model(model, input_size=(3, 8, 8))


USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.mix = nn.Linear(8, 8)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            t = self.stem(x).flatten(2).transpose(1, 2)        # (B, tokens, 8)
            attn = torch.einsum("btc,bsc->bts", t, t).softmax(dim=-1)  # a hand-written attention
            t = t + self.mix(attn @ t)
            return self.head(t.mean(dim=1))


    def build():
        return Net().eval()


    def with_cfg():
        net = Net().eval()
        net.pretrained_cfg = {"input_size": (3, 16, 16)}
        return net


    def not_a_module():
        return 42
    ''')


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    (tmp_path / "usernets").mkdir()
    (tmp_path / "usernets" / "__init__.py").write_text("")
    (tmp_path / "usernets" / "nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "usernets.nets"


def test_a_user_module_traces_quantizes_and_simulates(user_package, tmp_path, capsys):
    from pmq.models import load_model

    loaded = load_model(f"{user_package}:with_cfg")
    assert loaded.input_size == (3, 16, 16)
    trace = trace_model(loaded.model, loaded.input_size)
    assert trace.component_names == ["stem.0", "matmul_qk", "matmul_av", "mix", "head"]
    assert trace.macs == pytest.approx(_flop_counter_macs(loaded.model, trace.input_shape), rel=5e-3)
    qm = quantize_model(loaded.model, trace=trace)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert float((qm(x) - loaded.model(x)).abs().max()) <= 1e-5
    code = main(["simulate", "--model", f"{user_package}:build", "--input-size", "3,16,16", "--accelerator",
                 "bitfusion", "--bits", "W4A8", "--out", str(tmp_path / "sim"), "--json"])
    assert code == 0 and '"bops": ' in capsys.readouterr().out


@pytest.mark.parametrize("model, extra, needle", [
    ("usernets.nets:build", [], "error: --input-size: "),
    ("usernets.nets:build", [], "no input size known (no pretrained_cfg['input_size']): give its input size C,H,W"),
    ("usernets.nets:not_a_module", [], "--model: model usernets.nets:not_a_module: not_a_module() returned a int, "
                                       "not a torch.nn.Module"),
    ("usernets.nets:missing", [], "usernets.nets has no function 'missing'"),
    ("no_such_package.nets:build", [], "cannot import 'no_such_package.nets' (ModuleNotFoundError"),
    ("deit_smol_patch16_224", [], "unknown model 'deit_smol_patch16_224' (did you mean"),
    ("usernets.nets:build", ["--input-size", "3,16"], "expected three positive sizes C,H,W"),
])
def test_bad_models_are_one_line_exit_2(user_package, capsys, model, extra, needle):
    try:
        code = main(["simulate", "--model", model, *extra, "--accelerator", "bitfusion", "--json"])
    except SystemExit as usage_error:  # argparse rejects the flag itself
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def image_folder(tmp_path):
    """A tiny ImageNet-layout folder: train/ and val/, two classes of random 20×20 images."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for label in ("n0", "n1"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = torch.randint(0, 256, (20, 20, 3), generator=generator, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "images"


@pytest.mark.parametrize("metric", ["pmq", pytest.param("hawq", marks=pytest.mark.slow), "nuclear"])
def test_search_runs_end_to_end_on_a_user_module(user_package, image_folder, tmp_path, monkeypatch, capsys, metric):
    monkeypatch.setenv("PMQ_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["search", "--model", f"{user_package}:with_cfg", "--data", str(image_folder), "--objective",
                 "bops", "--budget", "0.5x:W8A8", "--metric", metric, "--calibration-images", "4",
                 "--out", str(tmp_path / "search"), "--json"])
    assert code == 0
    allocation = BitAllocation.load(tmp_path / "search" / "allocation.json")
    assert list(allocation.bits) == ["stem.0", "matmul_qk", "matmul_av", "mix", "head"]
    assert len({bits for _, bits in allocation.items()}) > 1  # a mixed allocation under the budget


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_per_image_weight_grads_of_grouped_convs_match_autograd(groups):
    """The pmq metric's per-image ∂ℓ/∂W for (depthwise) grouped convs, as in ConvNeXt."""
    from pmq.quant import QuantConv2d
    from pmq.sensitivity.fisher import per_group_weight_grads

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, groups=groups)
    a, g_out = torch.randn(3, 4, 6, 6), torch.randn(3, 8, 6, 6)
    got = per_group_weight_grads(QuantConv2d(conv), a, g_out, group=1)
    for n in range(3):
        weight = conv.weight.detach().clone().requires_grad_()
        out = torch.nn.functional.conv2d(a[n:n + 1], weight, None, 1, 1, 1, groups)
        (expected,) = torch.autograd.grad(out, weight, g_out[n:n + 1])
        assert torch.allclose(got[n], expected, atol=1e-5)


def test_patchwise_search_is_refused_before_any_pass_without_a_class_token(user_package, image_folder, capsys):
    code = main(["search", "--model", f"{user_package}:with_cfg", "--data", str(image_folder), "--objective", "bops",
                 "--budget", "0.5x:W8A8", "--patchwise"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "patch-wise precision needs a ViT with a class token; usernets.nets:with_cfg has no class token" in err
