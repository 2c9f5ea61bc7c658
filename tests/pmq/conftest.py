"""Shared fixtures for the pmq tests: small seeded ViTs (no checkpoint or data needed)."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from pmq.models import create_demo_vit

TINY_VIT_ARGS = dict(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=1,
                     num_heads=2, mlp_ratio=2.0)
"""4 patches + class token = 5 tokens, head dim 8: small enough to count costs by hand."""


@pytest.fixture
def tiny_vit_args() -> dict:
    return dict(TINY_VIT_ARGS)


@pytest.fixture
def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**TINY_VIT_ARGS).eval()


@pytest.fixture(scope="module")
def demo_vit() -> VisionTransformer:
    """The demo architecture with seeded random weights (the trained checkpoint is not needed here)."""
    torch.manual_seed(0)
    return create_demo_vit().eval()


@pytest.fixture
def tiny_results(tmp_path, tiny_vit):
    """A results folder of the tiny ViT written by the demo's writer: uniform W8A8 and W4A4, one PMQ
    allocation under 0.5x:W8A8 BOPs with its frontier, simulated on bitfusion and int8_systolic."""
    import accelerators
    import hwsim
    from pmq.allocation import BitAllocation, Bits
    from pmq.pareto import Choice, frontier
    from pmq.results import Measured, ResultsWriter
    from pmq.trace import size_mb, trace_model

    trace = trace_model(tiny_vit)
    names = trace.component_names
    accels = {name: accelerators.load(name) for name in ("bitfusion", "int8_systolic")}
    writer = ResultsWriter(tmp_path / "results", {
        "model": {"tag": "tiny-vit@0", "name": "tiny"}, "data": {"source": "synthetic", "test_images": 10},
        "search": {"primary_accelerator": "bitfusion", "float_on_hardware_bits": 16},
        "baseline": {"accelerator": "int8_systolic", "allocation": "W8A8"},
        "accelerators": {name: a.config for name, a in accels.items()}})
    allocations = {"W8A8": BitAllocation.uniform("W8A8", names), "W4A4": BitAllocation.uniform("W4A4", names),
                   "pmq-bops-0.5x": BitAllocation.uniform("W8A8", names).replace({"blocks.0.mlp.fc1": Bits(2, 4)})}
    top1 = {"W8A8": 0.9, "W4A4": 0.6, "pmq-bops-0.5x": 0.875}
    for label, allocation in allocations.items():
        method = "uniform" if label.startswith("W") else "pmq"
        sims = {name: hwsim.simulate(trace.workload(allocation), a) for name, a in accels.items()}
        measured = {name: Measured(top1[label], 10, size_mb(trace, allocation),
                                   trace.bops(allocation) / 1e9, s.latency_s, s.energy_pj, s.cycles,
                                   s.utilization, s.energy_breakdown, None if method == "uniform" else 0.25)
                    for name, s in sims.items()}
        search = {} if method == "uniform" else {"metric": "pmq", "objective": "bops", "budget": "0.5x:W8A8",
                                                 "budget_value": 1.5e-4}
        writer.add_allocation(label, method, allocation, measured, sims, **search)
    table = {"a": [Choice("lo", 3.0, {"bops": 1.0}), Choice("hi", 1.0, {"bops": 4.0})],
             "b": [Choice("lo", 2.0, {"bops": 2.0}), Choice("hi", 0.0, {"bops": 5.0})]}
    writer.add_frontier("pmq", "bops", frontier(table, ("bops",)), fixed_cost=10.0, unit_scale=1e-9,
                        unit="GBOPs", accelerator="bitfusion")
    writer.update(highlight=["pmq-bops-0.5x"], complete=True)
    return writer.root, allocations, top1
