"""Quantizer math: grids, scales, error bounds, edge cases, observers, straight-through gradients."""

from __future__ import annotations

import pytest
import torch

from pmq.errors import PMQError
from pmq.quant import ActQuantizer, WeightQuantizer, fake_quant_affine, fake_quant_symmetric
from pmq.quant.observers import OBSERVERS, MSEObserver, PercentileObserver, weight_clip_ratio


def _scale(lo: float, hi: float, bits: int) -> float:
    return (max(hi, 0.0) - min(lo, 0.0)) / (2 ** bits - 1)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_weight_grid_is_per_channel_int_b(bits):
    torch.manual_seed(bits)
    w = torch.randn(6, 10) * torch.arange(1, 7).unsqueeze(1)  # channels of different magnitude
    q = fake_quant_symmetric(w, bits)
    half = 2 ** (bits - 1)
    scale = w.abs().amax(dim=1, keepdim=True) / (half - 0.5)
    codes = q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.min() >= -half - 1e-4 and codes.max() <= half - 1 + 1e-4
    assert ((q - w).abs() <= scale / 2 * (1 + 1e-5)).all()  # the whole [-max|w|, max|w|] range


def test_two_bit_weights_use_all_four_codes_and_zero_channels_stay_zero():
    w = torch.tensor([[0.9, -0.2, 0.6, -1.5, 0.1, -0.7], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    q = fake_quant_symmetric(w, 2)  # scale = 1.5 / 1.5 = 1: codes {-2, -1, 0, 1}
    assert torch.equal(q[0], torch.tensor([1.0, 0.0, 1.0, -2.0, 0.0, -1.0]))  # -1.5 is a tie: to even
    assert torch.equal(fake_quant_symmetric(torch.tensor([[-3.0, -1.4, 3.0, 0.4]]), 2),
                       torch.tensor([[-4.0, -2.0, 2.0, 0.0]]))  # scale 2: -3 → -2·2, +3 → +1·2
    assert torch.equal(q[1], torch.zeros(6))
    assert not q.isnan().any()


def test_weight_quantizer_float_is_identity_and_bad_bits_rejected():
    quantizer = WeightQuantizer()
    w = torch.randn(3, 4)
    assert quantizer(w) is w
    with pytest.raises(PMQError, match="bits 9"):
        quantizer.quantize(w, 9)
    with pytest.raises(PMQError, match="weight clipping"):
        WeightQuantizer("banana")


def test_mse_weight_clipping_beats_minmax_on_outlier_channels():
    torch.manual_seed(1)
    w = torch.randn(8, 256)
    w[:, 0] = 12.0  # one outlier per channel stretches the min-max grid
    ratio = weight_clip_ratio(w, 3)
    assert (ratio < 1).all()
    err_minmax = (fake_quant_symmetric(w, 3) - w).pow(2).sum()
    err_mse = (WeightQuantizer("mse").quantize(w, 3) - w).pow(2).sum()
    assert err_mse < err_minmax


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_affine_error_within_half_scale_inside_range(bits):
    torch.manual_seed(bits)
    x = torch.rand(1000) * 7 - 2  # [-2, 5)
    lo, hi = torch.tensor(-2.0), torch.tensor(5.0)
    q = fake_quant_affine(x, lo, hi, bits)
    scale = _scale(-2, 5, bits)
    assert ((q - x).abs() <= scale / 2 * (1 + 1e-5)).all()
    assert len(q.unique()) <= 2 ** bits
    assert (q == 0).any() or not (x.abs() < scale / 2).any()  # zero is on the grid


def test_affine_clips_outside_range_and_keeps_zero_exact():
    x = torch.tensor([-10.0, 0.0, 0.3, 10.0])
    q = fake_quant_affine(x, torch.tensor(0.1), torch.tensor(1.0), 4)  # range widened to [0, 1]
    assert q[0] == 0 and q[1] == 0
    assert q[3] == pytest.approx(1.0)


@pytest.mark.parametrize("value", [0.0, 3.5, -2.25])
@pytest.mark.parametrize("bits", [2, 8])
def test_constant_tensors_give_no_nan(value, bits):
    x = torch.full((4, 5), value)
    for granularity in ("tensor", "token"):
        quantizer = ActQuantizer()
        quantizer.granularity = granularity
        quantizer.start_observing("minmax")
        quantizer(x)
        quantizer.stop_observing()
        q = quantizer.quantize(x, bits)
        assert not q.isnan().any()
        assert torch.allclose(q, x)  # a constant is an end of its own (zero-including) range


def test_per_token_scales_follow_each_row():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16) * torch.logspace(-2, 2, 5).reshape(1, 5, 1)
    quantizer = ActQuantizer()
    quantizer.granularity = "token"
    q = quantizer.quantize(x, 4)
    for b in range(2):
        for t in range(5):
            row = x[b, t]
            scale = _scale(float(row.min()), float(row.max()), 4)
            assert ((q[b, t] - row).abs() <= scale / 2 * (1 + 1e-5)).all()
            codes = q[b, t] / scale  # zero is on the grid, so every value is an integer multiple
            assert torch.allclose(codes, codes.round(), atol=1e-3)


def test_per_row_bits_match_rowwise_int_bits():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 8)
    row_bits = torch.tensor([8, 2, 4, 3, 8, 2])
    quantizer = ActQuantizer()
    quantizer.granularity = "token"
    q = quantizer.quantize(x, row_bits)
    for t, b in enumerate(row_bits.tolist()):
        assert torch.equal(q[:, t], quantizer.quantize(x[:, t], b))


def test_per_row_bits_batch_by_token_align_with_attention_heads():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 8)  # (B, heads, N, D)
    row_bits = torch.tensor([[8, 2, 8, 2, 8], [2, 2, 2, 8, 8]])  # (B, N)
    quantizer = ActQuantizer()
    quantizer.granularity = "token"
    q = quantizer.quantize(x, row_bits)
    assert torch.equal(q[1, 3, 0], quantizer.quantize(x[1, 3, 0], 2))
    assert torch.equal(q[1, 3, 4], quantizer.quantize(x[1, 3, 4], 8))
    with pytest.raises(PMQError, match="per-row bits"):
        quantizer.quantize(x, torch.tensor([8, 2]))
    with pytest.raises(PMQError, match="2..8"):
        quantizer.quantize(x, torch.full((5,), 9))


@pytest.mark.parametrize("granularity,reduce_dim", [("token", -1), ("token", -2), ("tensor", -1)])
def test_quantize_each_equals_one_call_per_bit_width(granularity, reduce_dim):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 8) * torch.logspace(-1, 1, 8)
    quantizer = ActQuantizer(reduce_dim=reduce_dim)
    quantizer.start_observing("percentile")
    quantizer(x)
    quantizer.stop_observing()
    quantizer.granularity = granularity
    bits = [2, 3, 5, 8]
    each = quantizer.quantize_each(x, bits)
    assert each.shape == (len(bits), *x.shape)
    for i, b in enumerate(bits):
        torch.testing.assert_close(each[i], quantizer.quantize(x, b), rtol=0, atol=1e-6)
    with pytest.raises(PMQError, match="bits 9"):
        quantizer.quantize_each(x, [4, 9])


@pytest.mark.parametrize("clipping", ["minmax", "mse"])
def test_weight_quantize_each_equals_one_call_per_bit_width(clipping):
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3) * torch.logspace(-2, 1, 6).reshape(6, 1, 1)
    w[2] = 0.0  # an all-zero channel stays zero
    quantizer = WeightQuantizer(clipping)
    bits = [2, 3, 4, 8]
    each = quantizer.quantize_each(w, bits)
    assert each.shape == (len(bits), *w.shape)
    for i, b in enumerate(bits):
        torch.testing.assert_close(each[i], quantizer.quantize(w, b), rtol=0, atol=1e-6)
    assert not each[:, 2].any()
    with pytest.raises(PMQError, match="bits 1"):
        quantizer.quantize_each(w, [1])


def test_per_row_bits_with_static_ranges_use_each_bits_range():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8)
    quantizer = ActQuantizer()
    quantizer.start_observing("mse")
    quantizer(x)
    quantizer.stop_observing()
    q = quantizer.quantize(x, torch.tensor([3, 8, 3, 8, 3, 8]))
    assert torch.equal(q[:, 0], quantizer.quantize(x[:, 0], 3))
    assert torch.equal(q[:, 1], quantizer.quantize(x[:, 1], 8))


def test_static_quantization_needs_calibration():
    quantizer = ActQuantizer()
    with pytest.raises(PMQError, match="calibrate"):
        quantizer.quantize(torch.randn(3, 4), 8)
    assert quantizer.quantize(x := torch.randn(3, 4), None) is x


def test_straight_through_gradient_is_one_inside_range_zero_outside():
    quantizer = ActQuantizer()
    quantizer.start_observing("minmax")
    quantizer(torch.tensor([-1.0, 1.0]))
    quantizer.stop_observing()
    x = torch.tensor([-3.0, -0.5, 0.2, 0.7, 3.0], requires_grad=True)
    quantizer.quantize(x, 4).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_observers_registry_and_ranges():
    assert set(OBSERVERS) == {"minmax", "percentile", "mse"}
    torch.manual_seed(0)
    x = torch.randn(100_000)
    x[0], x[1] = 50.0, -40.0  # outliers
    ranges = {}
    for name, cls in OBSERVERS.items():
        observer = cls()
        assert not observer.ready
        observer.update(x[:50_000])
        observer.update(x[50_000:])
        ranges[name] = observer.range(3)
    assert ranges["minmax"] == (-40.0, 50.0)
    lo, hi = ranges["percentile"]
    assert 3 < hi < 5 and -5 < lo < -3  # 99.99th percentile of a unit normal ≈ 3.7
    lo, hi = ranges["mse"]
    assert hi < 50 and lo > -40


def test_mse_observer_clips_harder_at_fewer_bits():
    torch.manual_seed(0)
    observer = MSEObserver()
    observer.update(torch.randn(20_000))
    assert observer.range(2)[1] < observer.range(8)[1]


def test_percentile_observer_on_tiny_tensor():
    observer = PercentileObserver()
    observer.update(torch.tensor([1.0, 2.0]))
    assert observer.range(4) == (1.0, 2.0)
