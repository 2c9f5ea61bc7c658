"""Sensitivity metrics: shapes and signs, the Fisher arithmetic against brute force, pass counts,
the cache, agreement with the measured loss increase, and bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

import pmq.sensitivity.compute as compute_module
from pmq.allocation import Bits
from pmq.errors import PMQError
from pmq.quant import calibrate, quantize_model
from pmq.sensitivity import (
    METRICS,
    Sensitivity,
    compute_sensitivity,
    quantize_operand,
    sensitivity_table,
)

SMALL_VIT = dict(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=10)
ALL_BITS = (2, 3, 4, 5, 6, 7, 8)
FAST_OPTIONS = {"hawq": {"max_iter": 8}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and lose a lot when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**SMALL_VIT).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 1, 28, 28, generator=generator), torch.randint(0, 10, (8,), generator=generator)


@pytest.fixture(scope="module")
def trained() -> tuple[VisionTransformer, torch.Tensor, torch.Tensor]:
    """A small ViT trained for 60 steps on a seeded 10-class pattern task (class prototype + noise)."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(10, 1, 28, 28, generator=generator)

    def sample(n):
        y = torch.randint(0, 10, (n,), generator=generator)
        return prototypes[y] + 1.5 * torch.randn(n, 1, 28, 28, generator=generator), y

    torch.manual_seed(0)
    model = VisionTransformer(**SMALL_VIT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        x, y = sample(32)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y = sample(32 + 256)
    return model.eval(), x, y


def _run(model, images, labels, metric, bits=ALL_BITS, **options):
    return compute_sensitivity(model, images, labels, metric, bits, use_cache=False, progress=False,
                               **{**FAST_OPTIONS.get(metric, {}), **options})


@pytest.mark.parametrize("metric", ["pmq", "hawq", "nuclear", "measured"])
def test_every_metric_covers_all_components_and_bits(small_vit, batch, metric):
    bits = (2, 4, 8)
    sens = _run(small_vit, *batch, metric, bits)
    names = quantize_model(small_vit).component_names()
    assert sens.metric == metric and sens.component_names() == names and sens.bits == [2, 4, 8]
    for table in (sens.weights, sens.activations):
        assert list(table) == names
        for row in table.values():
            assert sorted(row) == [2, 4, 8]
            assert all(v >= 0 and v < float("inf") for v in row.values())
    assert sens.wall_time_s > 0 and sens.cpu_time_s > 0 and sens.forward_passes >= 1
    # something is sensitive: 2-bit operands are not all free
    assert max(row[2] for table in (sens.weights, sens.activations) for row in table.values()) > 0


@pytest.mark.parametrize("metric", ["pmq", "hawq"])
def test_omega_does_not_increase_with_bits(trained, metric):
    # a trained model: a random one's near-uniform attention maps sit between the 2- and 3-bit grids'
    # levels alike, so their quantization error can tie or even grow from 2 to 3 bits
    model, images, labels = trained
    sens = _run(model, images[:16], labels[:16], metric)
    for table in (sens.weights, sens.activations):
        for name, row in table.items():
            values = [row[b] for b in ALL_BITS]
            assert all(lo >= hi for lo, hi in zip(values, values[1:], strict=False)), (name, values)


def test_pmq_pass_count_does_not_depend_on_the_bit_candidates(small_vit, batch):
    one = _run(small_vit, *batch, "pmq", (4,))
    seven = _run(small_vit, *batch, "pmq", ALL_BITS)
    assert (one.forward_passes, one.backward_passes) == (seven.forward_passes, seven.backward_passes) == (1, 1)
    chunked = _run(small_vit, *batch, "pmq", ALL_BITS, batch_size=3)  # 3 + 3 + 2 images: still one sweep
    assert (chunked.forward_passes, chunked.backward_passes) == (1, 1)
    for name in seven.weights:  # per-image gradients: batching changes nothing
        assert chunked.weights[name][3] == pytest.approx(seven.weights[name][3], rel=1e-4)
        assert chunked.activations[name][3] == pytest.approx(seven.activations[name][3], rel=1e-4)
    hawq = _run(small_vit, *batch, "hawq", (2, 8), max_iter=5, tol=0.0)
    assert (hawq.forward_passes, hawq.backward_passes, hawq.details["hutchinson_samples"]) == (1, 6, 5)


def _brute_force_fisher(qv, images, labels, group):
    """Per-group weight gradients by one backward per group of images: F = (1/N) Σ_m G_m², ḡ = (1/N) Σ_m G_m."""
    weights = {n: c.weight for n, c in qv.components().items() if c.kind != "matmul"}
    fisher = {n: torch.zeros_like(w) for n, w in weights.items()}
    mean_grad = {n: torch.zeros_like(w) for n, w in weights.items()}
    for start in range(0, len(images), group):
        loss = F.cross_entropy(qv(images[start:start + group]), labels[start:start + group], reduction="sum")
        for name, grad in zip(weights, torch.autograd.grad(loss, list(weights.values())), strict=True):
            fisher[name] += grad.pow(2) / len(images)
            mean_grad[name] += grad / len(images)
    return fisher, mean_grad


@pytest.mark.parametrize("group", [1, 4])
def test_pmq_weight_fisher_equals_brute_force_per_image_gradients(small_vit, batch, group):
    qv = quantize_model(small_vit)
    sens = _run(qv, *batch, "pmq", (2, 5), grad_group=group, first_order=True)
    fisher, mean_grad = _brute_force_fisher(qv, *batch, group)
    for name, f in fisher.items():
        component = qv.component(name)
        for b in (2, 5):
            err = quantize_operand(component, "w", component.weight.detach(), b) - component.weight.detach()
            second = 0.5 * float((f * err.pow(2)).sum())
            signed = second + float((mean_grad[name] * err).sum())
            assert sens.details["signed"]["weights"][name][str(b)] == pytest.approx(signed, rel=1e-3, abs=1e-8)
            assert sens.weights[name][b] == max(sens.details["signed"]["weights"][name][str(b)], 0.0)
    plain = _run(qv, *batch, "pmq", (2, 5), grad_group=group)
    for name, f in fisher.items():
        weight = qv.component(name).weight.detach()
        err = quantize_operand(qv.component(name), "w", weight, 2) - weight
        assert plain.weights[name][2] == pytest.approx(0.5 * float((f * err.pow(2)).sum()), rel=1e-4), name


def test_pmq_activation_terms_use_each_images_own_gradient(small_vit, batch):
    qv = quantize_model(small_vit)
    images, labels = batch
    name = "blocks.1.mlp.fc1"
    diagonal = _run(qv, images, labels, "pmq", (3,))
    outer = _run(qv, images, labels, "pmq", (3,), fisher="outer")
    with_first = _run(qv, images, labels, "pmq", (3,), first_order=True)
    fc1 = qv.component(name)
    first = second = rank_one = 0.0
    for i in range(len(images)):
        with qv.recording([name]) as ops:
            loss = F.cross_entropy(qv(images[i:i + 1]), labels[i:i + 1])
        a = ops[name].a
        (grad,) = torch.autograd.grad(loss, [a])
        err = quantize_operand(fc1, "a", a.detach(), 3) - a.detach()
        first += float((grad * err).sum())
        second += 0.5 * float((grad.pow(2) * err.pow(2)).sum())
        rank_one += 0.5 * float((grad * err).sum()) ** 2
    n = len(images)
    assert diagonal.activations[name][3] == pytest.approx(second / n, rel=1e-4)
    assert outer.activations[name][3] == pytest.approx(rank_one / n, rel=1e-4)
    signed = with_first.details["signed"]["activations"][name]["3"]
    assert signed == pytest.approx((first + second) / n, rel=1e-4, abs=1e-9)
    assert with_first.activations[name][3] == max(signed, 0.0)


@pytest.mark.parametrize("granularity", ["token", "tensor"])
def test_operands_are_quantized_exactly_as_the_forward_does(small_vit, batch, granularity):
    qv = quantize_model(small_vit, granularity=granularity)
    images = batch[0][:2]
    if granularity == "tensor":
        calibrate(qv, batch[0], observer="mse")  # static ranges: the metric must use the calibrated ones
    with torch.no_grad(), qv.recording() as ops:
        qv(images)
    with torch.no_grad():
        for name, component in qv.components().items():
            a, w = ops[name].a, ops[name].w
            component.set_bits(Bits(w=4, a=3))
            a_q, w_q = quantize_operand(component, "a", a, 3), quantize_operand(component, "w", w, 4)
            if component.kind == "linear":
                expected = F.linear(a_q, w_q, component.bias)
                got = component(a)
            elif component.kind == "conv":
                expected = F.conv2d(a_q, w_q, component.bias, component.stride)
                got = component(a)
            else:
                expected = a_q @ (w_q.transpose(-2, -1) if component.transpose_b else w_q)
                got = component(a, w)
            component.set_bits(Bits(None, None))
            assert torch.allclose(got, expected, atol=1e-5), name
            assert not torch.equal(a_q, a), name


def test_cache_returns_identical_numbers_without_recomputing(small_vit, batch, tmp_path, monkeypatch):
    images, labels = batch
    first = compute_sensitivity(small_vit, images, labels, "pmq", (2, 4), cache_dir=tmp_path, progress=False)
    assert not first.from_cache and len(list(tmp_path.glob("pmq-*.json"))) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cache hit must not run the metric")

    monkeypatch.setattr(compute_module, "run_metric", must_not_run)
    second = compute_sensitivity(small_vit, images, labels, "pmq", (2, 4), cache_dir=tmp_path, progress=False)
    assert second.from_cache
    assert second.weights == first.weights and second.activations == first.activations
    assert second.cache_key == first.cache_key
    for changed in ({"bits": (2, 5)}, {"images": images * 1.01}, {"labels": labels.roll(1)}):
        args = {"images": images, "labels": labels, "bits": (2, 4), **changed}
        with pytest.raises(AssertionError, match="cache hit"):  # any input change is a miss
            compute_sensitivity(small_vit, args["images"], args["labels"], "pmq", args["bits"],
                                cache_dir=tmp_path, progress=False)
    with pytest.raises(AssertionError, match="cache hit"):
        compute_sensitivity(small_vit, images, labels, "pmq", (2, 4), cache_dir=tmp_path, progress=False,
                            fisher="outer")
    with pytest.raises(AssertionError, match="cache hit"):  # quantizer settings are part of the key
        compute_sensitivity(quantize_model(small_vit, granularity="tensor"), images, labels, "pmq", (2, 4),
                            cache_dir=tmp_path, progress=False)
    monkeypatch.setenv("PMQ_CACHE_DIR", str(tmp_path))
    assert compute_sensitivity(small_vit, images, labels, "pmq", (2, 4), progress=False).from_cache


def test_hawq_is_seeded(small_vit, batch):
    first = _run(small_vit, *batch, "hawq", (2,), max_iter=4, seed=3)
    again = _run(small_vit, *batch, "hawq", (2,), max_iter=4, seed=3)
    other = _run(small_vit, *batch, "hawq", (2,), max_iter=4, seed=4)
    assert first.weights == again.weights
    assert first.weights != other.weights


def _spearman(x: list[float], y: list[float]) -> float:
    rx = torch.tensor(x).argsort().argsort().double()
    ry = torch.tensor(y).argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])


def test_pmq_ranks_like_the_measured_loss_increase(trained):
    model, images, labels = trained
    bits = (2, 3, 4)
    qv = quantize_model(model)
    pmq = _run(qv, images[:32], labels[:32], "pmq", bits)
    measured = _run(qv, images[32:], labels[32:], "measured", bits)
    keys = [(table, name, b) for table in ("weights", "activations") for name in pmq.weights for b in bits]
    truth = [measured.details["signed"][t][n][str(b)] for t, n, b in keys]
    estimate = [getattr(pmq, t)[n][b] for t, n, b in keys]
    assert _spearman(estimate, truth) > 0.45  # 0.61 at this seed; nuclear 0.47, hawq 0.52


def test_result_round_trip_omega_and_table(small_vit, batch, tmp_path):
    sens = _run(small_vit, *batch, "nuclear", (2, 8))
    path = sens.save(tmp_path / "s.json")
    loaded = Sensitivity.load(path)
    assert loaded.weights == sens.weights and loaded.activations == sens.activations
    assert Sensitivity.from_json(sens.to_json()).details == sens.details
    name = "blocks.0.mlp.fc1"
    assert loaded.omega(name, Bits(2, 8)) == sens.weights[name][2] + sens.activations[name][8]
    assert loaded.omega(name, Bits(None, 2)) == sens.activations[name][2]
    assert loaded.omega(name, Bits(None, None)) == 0.0
    table = sensitivity_table(loaded, loaded.component_names(), [Bits(2, 2), Bits(8, 8)])
    assert table[name][Bits(8, 8)] == loaded.omega(name, Bits(8, 8))
    assert list(table) == loaded.component_names()
    with pytest.raises(PMQError, match="recompute the sensitivity with bits including 4"):
        loaded.omega(name, Bits(4, 8))
    with pytest.raises(PMQError, match="no sensitivity for component"):
        loaded.omega("blocks.9.mlp.fc1", Bits(8, 8))
    (tmp_path / "bad.json").write_text("{\"format\": \"other\"}")
    with pytest.raises(PMQError, match="not a sensitivity result"):
        Sensitivity.load(tmp_path / "bad.json")


def test_bad_inputs_raise_one_line_errors(small_vit, batch):
    images, labels = batch
    assert set(METRICS) == {"pmq", "hawq", "nuclear", "measured"}
    with pytest.raises(PMQError, match="unknown sensitivity metric 'fisher'.*pmq, hawq"):
        compute_sensitivity(small_vit, images, labels, "fisher", use_cache=False)
    with pytest.raises(PMQError, match="unknown option 'iterations' for the hawq metric"):
        compute_sensitivity(small_vit, images, labels, "hawq", use_cache=False, iterations=3)
    with pytest.raises(PMQError, match="bits must be"):
        compute_sensitivity(small_vit, images, labels, "pmq", (1, 4), use_cache=False)
    with pytest.raises(PMQError, match="labels must be"):
        compute_sensitivity(small_vit, images, labels[:3], "pmq", use_cache=False)
    with pytest.raises(PMQError, match="unknown target"):
        compute_sensitivity(small_vit, images, labels, "pmq", use_cache=False, target="soft")
    with pytest.raises(PMQError, match="grad_group"):
        compute_sensitivity(small_vit, images, labels, "pmq", use_cache=False, grad_group=3)
