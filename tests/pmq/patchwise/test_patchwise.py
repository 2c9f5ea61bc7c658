"""Patch-wise module: settings, per-token inference, hardware ops, the per-layer search tables."""

from __future__ import annotations

import json

import pytest
import torch

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.cli import main
from pmq.errors import PMQError
from pmq.experiment import Experiment
from pmq.patchwise.maps import token_bit_maps, token_bits_record
from pmq.patchwise.runtime import assign_groups
from pmq.patchwise.search import fisher_omega, layer_costs, patchwise_choices, run_patchwise
from pmq.patchwise.spec import LayerSetting, PatchwiseSpec
from pmq.plots.tokens import save_token_bits
from pmq.quant import quantize_model
from pmq.trace import trace_model

ALL_OPERANDS = ["q", "k", "v", "attn", "qkv", "proj", "fc1", "fc2"]


def with_patchwise(allocation: BitAllocation, **patchwise) -> BitAllocation:
    return BitAllocation(dict(allocation.bits), patchwise)


def every_layer(n: int, **setting) -> dict:
    return {f"blocks.{i}": dict(setting) for i in range(n)}


@pytest.fixture(scope="module")
def demo_qv(demo_vit):
    return quantize_model(demo_vit, weight_clipping="minmax")  # no clipping search: these tests are about tokens


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("patchwise", "fragment"), [
    ({"layers": {"blocks.0": {"rho": 0}}}, "rho 0 is outside (0, 1]"),
    ({"layers": {"blocks.0": {"rho": -0.5}}}, "rho -0.5 is outside (0, 1]"),
    ({"layers": {"blocks.0": {"rho": 1.5}}}, "rho 1.5 is outside (0, 1]"),
    ({"levels": [8, 1], "layers": {}}, "levels [8, 1]"),
    ({"levels": [9, 4], "layers": {}}, "2..8"),
    ({"levels": [4, 8], "layers": {}}, "highest first"),
    ({"layers": {"blocks.0": {"rho": 0.5, "levels": [8, 4, 2]}}}, "needs 2 cumulative"),
    ({"layers": {"blocks.0": {"rho": [0.6, 0.3], "levels": [8, 4, 2]}}}, "non-decreasing"),
    ({"layers": {"blocks.9": {"rho": 0.5}}}, "unknown layer 'blocks.9'"),
    ({"apply_to": ["x"], "layers": {}}, "apply_to"),
    ({"score": "vibes", "layers": {}}, "score 'vibes'"),
    ({"rho": 0.5}, "unknown key 'rho'"),
])
def test_invalid_settings_are_one_line_errors(demo_qv, patchwise, fragment):
    allocation = with_patchwise(BitAllocation.uniform("W8A8", demo_qv.component_names()), **patchwise)
    with pytest.raises(PMQError) as info:
        allocation.validate(demo_qv.component_names())
    assert fragment in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(("rho", "levels"), [(0, [8, 4]), (1.01, [8, 4]), (0.5, [8, 1]), (0.5, [9, 4])])
def test_invalid_settings_through_pmq_simulate_exit_2_with_one_line(capsys, tmp_path, demo_qv, rho, levels):
    allocation = with_patchwise(BitAllocation.uniform("W8A8", demo_qv.component_names()),
                                levels=levels, layers={"blocks.1": {"rho": rho}})
    path = allocation.save(tmp_path / "alloc.json")
    code = main(["simulate", "--model", "demo", "--accelerator", "bitfusion", "--allocation", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "patchwise" in err and "Traceback" not in err


def test_pmq_simulate_prices_a_patchwise_allocation(capsys, tmp_path, demo_qv):
    plain = BitAllocation.uniform("W8A8", demo_qv.component_names())
    pw = with_patchwise(plain, levels=[8, 2], layers=every_layer(6, rho=0.25))
    results = {}
    for label, allocation in (("plain", plain), ("pw", pw)):
        path = allocation.save(tmp_path / f"{label}.json")
        assert main(["simulate", "--model", "demo", "--accelerator", "loom", "--allocation", str(path),
                     "--out", str(tmp_path / label), "--json"]) == 0
        results[label] = json.loads(capsys.readouterr().out)
    assert results["pw"]["bops"] < results["plain"]["bops"]
    assert "blocks.0.attn.token_score" in (tmp_path / "pw" / "per_op.csv").read_text()


def test_group_sizes_and_assignment_keep_the_top_fraction_and_the_class_token():
    setting = LayerSetting((0.25, 0.5), (8, 4, 2))
    assert setting.group_sizes(49) == (13, 12, 24)
    assert LayerSetting((0.3,)).group_sizes(10) == (3, 7)  # 0.3·10 is 3, not 4, despite float rounding
    assert LayerSetting((1.0,)).group_sizes(49) == (49, 0)
    score = torch.rand(5, 49, generator=torch.Generator().manual_seed(1))
    groups = assign_groups(score, setting, prefix=1)
    assert groups.shape == (5, 50) and (groups[:, 0] == 0).all()
    for image in range(5):
        patch_groups = groups[image, 1:]
        assert [int((patch_groups == g).sum()) for g in range(3)] == [13, 12, 24]
        ranked = score[image].argsort(descending=True)
        assert (patch_groups[ranked[:13]] == 0).all() and (patch_groups[ranked[25:]] == 2).all()


def test_rho_one_reproduces_the_plain_allocation_exactly(demo_vit, demo_qv, images):
    plain = BitAllocation.uniform("W4A8", demo_qv.component_names())
    one = with_patchwise(plain, levels=[8, 4], apply_to=ALL_OPERANDS, layers=every_layer(6, rho=1.0))
    below = with_patchwise(plain, levels=[8, 4, 2], apply_to=ALL_OPERANDS, layers=every_layer(6, rho=[1.0, 1.0]))
    with torch.no_grad():
        reference = demo_qv.apply(plain)(images)
        assert torch.equal(demo_qv.apply(one)(images), reference)
        assert torch.equal(demo_qv.apply(below)(images), reference)
        assert not torch.equal(demo_qv.apply(with_patchwise(plain, layers={"blocks.2": {"rho": 0.5}}))(images),
                               reference)
    for name in ("bitfusion", "loom"):
        accel = accelerators.load(name)
        expected = hwsim.simulate(trace_model(demo_vit).workload(plain), accel)
        for allocation in (one, below):
            got = hwsim.simulate(trace_model(demo_vit).workload(allocation), accel)
            assert [op.name for op in got.ops] == [op.name for op in expected.ops]
            assert (got.cycles, got.energy_pj, got.bops) == (expected.cycles, expected.energy_pj, expected.bops)


@pytest.mark.parametrize("score", ["cls_attention", "value_norm", "random"])
def test_class_token_is_never_demoted(demo_qv, images, score):
    plain = BitAllocation.uniform("W8A8", demo_qv.component_names())
    allocation = with_patchwise(plain, levels=[8, 4, 2], score=score,
                                layers=every_layer(6, rho=[0.1, 0.2]))
    for operand in ("q", "k", "attn", "v"):
        maps = token_bit_maps(demo_qv, images, allocation, operand=operand)
        assert (maps.class_bits == 8).all()
        assert ((maps.bits == 8).sum(axis=(2, 3)) == 5).all()  # ceil(0.1 · 49) patches keep 8 bits
        assert ((maps.bits == 2).sum(axis=(2, 3)) == 39).all()


def test_token_bit_figure_is_written(demo_qv, images, tmp_path):
    allocation = with_patchwise(BitAllocation.uniform("W8A8", demo_qv.component_names()), levels=[8, 4, 2],
                                layers={"blocks.1": {"rho": [0.25, 0.5]}})
    maps = token_bit_maps(demo_qv, images[:2], allocation, labels=torch.tensor([3, 7]))
    assert maps.bits.shape == (2, 6, 7, 7) and (maps.bits[:, 0] == 8).all()  # blocks.0 is plain
    assert sorted(set(maps.bits[:, 1].ravel().tolist())) == [2, 4, 8]
    save_token_bits(token_bits_record(maps), tmp_path / "bits.png", max_layers=len(maps.layers))
    assert (tmp_path / "bits.png").read_bytes()[:4] == b"\x89PNG"


def test_token_bits_reach_every_operand_and_lower_levels_hurt_more(demo_qv, images):
    plain = BitAllocation.uniform("W8A8", demo_qv.component_names())
    with torch.no_grad():
        reference = demo_qv.apply(plain)(images)
        errors = {}
        for operand in ALL_OPERANDS:
            allocation = with_patchwise(plain, levels=[8, 2], apply_to=[operand], layers=every_layer(6, rho=0.3))
            errors[operand] = float((demo_qv.apply(allocation)(images) - reference).abs().max())
        assert all(error > 0 for error in errors.values()), errors
        mild = with_patchwise(plain, levels=[8, 6], layers=every_layer(6, rho=0.3))
        harsh = with_patchwise(plain, levels=[8, 2], layers=every_layer(6, rho=0.3))
        assert (demo_qv.apply(mild)(images) - reference).abs().mean() < (demo_qv.apply(harsh)(images)
                                                                          - reference).abs().mean()


def test_workload_groups_follow_the_settings(demo_vit):
    names = quantize_model(demo_vit).component_names()
    plain = BitAllocation.uniform("W8A8", names)
    pw = with_patchwise(plain, levels=[8, 4], apply_to=ALL_OPERANDS, layers={"blocks.0": {"rho": 0.5},
                                                                            "blocks.3": {"rho": 0.5}})
    ops = {op.name: op for op in trace_model(demo_vit, batch=2).workload(pw).ops}
    qk = ops["blocks.3.attn.matmul_qk"]
    assert qk.m == 49 and qk.row_groups == ((25, 8), (24, 4)) and qk.col_groups == ((26, 8), (24, 4))
    assert ops["blocks.3.attn.matmul_qk.class_rows"].m == 1 and not ops["blocks.3.attn.matmul_qk.class_rows"].grouped
    assert ops["blocks.3.attn.matmul_av"].depth_groups == ((26, 8), (24, 4))
    assert ops["blocks.3.mlp.fc1"].row_groups == ((52, 8), (48, 4))  # batch 2
    assert ops["blocks.3.attn.qkv"].row_groups and "blocks.3.attn.qkv.token_score" in ops
    assert not ops["blocks.0.attn.qkv"].grouped  # nothing before the first block ranks its rows
    assert ops["blocks.3.attn.regroup"].elements == 3 * 2 * 50 * 128
    assert not any(name.startswith("blocks.1.") and getattr(op, "grouped", False) for name, op in ops.items())
    attention = [n for n in ops if n.endswith(("matmul_qk", "matmul_av"))]
    plain_ops = {op.name: op for op in trace_model(demo_vit, batch=2).workload(plain).ops}
    assert sum(ops[n].bops for n in attention) < sum(plain_ops[n].bops for n in attention)


def test_layer_costs_add_up_to_the_whole_model(demo_vit):
    names = quantize_model(demo_vit).component_names()
    base = BitAllocation.uniform("W4A8", names)
    choices = [LayerSetting((1.0,)), LayerSetting((0.25,), (8, 2))]
    accel = accelerators.load("bitfusion")
    costs, fixed = layer_costs(trace_model(demo_vit), base, choices, "latency", accel)
    mixed = {"blocks.1": choices[1], "blocks.4": choices[1]}
    allocation = with_patchwise(base, **PatchwiseSpec(mixed).to_dict())
    expected = fixed + sum(costs[layer][(mixed.get(layer) or choices[0]).key] for layer in costs)
    assert hwsim.estimate_workload(trace_model(demo_vit).workload(allocation), accel).latency_s == pytest.approx(expected)
    with pytest.raises(PMQError, match="model size"):
        layer_costs(trace_model(demo_vit), base, choices, "size", accel)


def test_choices_and_fisher_omega_rank_harsher_settings_higher(tiny_vit):
    choices = patchwise_choices(((8, 4), (8, 2)), (1.0, 0.5, 0.25))
    assert [str(c) for c in choices] == ["rho=1@8/4", "rho=0.25@8/4", "rho=0.5@8/4", "rho=0.25@8/2", "rho=0.5@8/2"]
    qv = quantize_model(tiny_vit).apply(BitAllocation.uniform("W8A8", quantize_model(tiny_vit).component_names()))
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    omega = fisher_omega(qv, x, torch.randint(0, 3, (16,)), choices)["blocks.0"]
    assert omega[choices[0].key] == 0
    assert 0 < omega[choices[2].key] < omega[choices[1].key] < omega[choices[3].key]


def test_run_patchwise_picks_settings_within_the_budget():
    experiment = Experiment("demo", calibration_images=16)
    base = BitAllocation.uniform("W8A8", experiment.component_names)
    choices = [LayerSetting((1.0,)), LayerSetting((0.5,)), LayerSetting((0.25,), (8, 2))]
    base_bops = sum(op.bops for op in experiment.trace.workload(base).ops)
    search = run_patchwise(experiment, base, None, "bops", "0.98x", choices=choices, omega_images=16, evaluate=False)
    chosen = search.allocation.validate(experiment.component_names)
    assert chosen.patchwise["layers"] and chosen.bits == base.bits
    assert sum(op.bops for op in experiment.trace.workload(chosen).ops) <= 0.98 * base_bops
    assert search.summary.cost <= 0.98 * base_bops and search.summary.base_cost == base_bops
    everything = run_patchwise(experiment, base, None, "bops", "1x", choices=choices, omega_images=16,
                               evaluate=False)
    assert everything.allocation.patchwise["layers"] == {}  # no budget pressure: Ω 0, nothing demoted
    with pytest.raises(PMQError, match="below the cheapest"):
        run_patchwise(experiment, base, None, "bops", "0.5x", choices=choices, omega_images=16, evaluate=False)


@pytest.mark.slow
def test_patchwise_without_a_budget_is_always_feasible_and_token_hardware_turns_bits_into_time():
    """No budget: 0.9x of the base, or the cheapest setting when 0.9x lies below it (and the summary says
    which). On loom_tokens demoted tokens save simulated time, so a latency search picks layers; on plain
    loom at W4A4 base (q·kᵀ/attn·v already at 4 bits) nothing can reach 0.9x: the cheapest setting is taken."""
    experiment = Experiment("demo", calibration_images=16)
    names = experiment.component_names
    choices = [LayerSetting((1.0,)), LayerSetting((0.5,), (8, 2)), LayerSetting((0.25,), (8, 2))]
    tokens = accelerators.load("loom_tokens")
    base = BitAllocation.uniform("W8A8", names)
    search = run_patchwise(experiment, base, tokens, "latency", None, choices=choices, omega_images=16,
                           evaluate=False)
    s = search.summary
    assert s.layers and s.cost < s.base_cost
    assert s.budget.startswith("default") and s.cost <= max(s.budget_base_units, s.base_cost)
    simulated = hwsim.estimate_workload(experiment.trace.workload(search.allocation), tokens).latency_s
    assert simulated == pytest.approx(s.cost)
    low = BitAllocation.uniform("W4A4", names)
    cheapest = run_patchwise(experiment, low, accelerators.load("loom"), "latency", None, choices=choices,
                             omega_images=16, evaluate=False)
    assert "cheapest setting" in cheapest.summary.budget
    assert cheapest.summary.cost == pytest.approx(cheapest.summary.budget_base_units)
