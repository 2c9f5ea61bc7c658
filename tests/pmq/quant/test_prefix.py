"""Reusing the blocks that consecutive allocations share: same logits, fewer blocks run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pmq.patchwise.runtime  # noqa: F401  (registers the patch-wise runtime)
from pmq.allocation import BitAllocation, Bits
from pmq.patchwise.spec import LayerSetting, PatchwiseSpec
from pmq.quant import calibrate, quantize_model, reusing_prefixes
from pmq.quant.prefix import stage_sequence
from pmq.trace import trace_model


def _allocations(names: list[str]) -> list[BitAllocation]:
    """W8A8, then 4-bit weights from block 4 on, then also from block 1 on, then back to the first."""
    def lowered(first_block: int) -> BitAllocation:
        return BitAllocation({n: Bits(4 if n.startswith("blocks.") and int(n.split(".")[1]) >= first_block else 8, 8)
                              for n in names})
    return [lowered(99), lowered(4), lowered(1), lowered(99)]


class _BlockCalls:
    """How many times each block of the demo ViT ran."""

    def __init__(self, model: nn.Module) -> None:
        self.count = 0
        for block in model.blocks:
            block.register_forward_pre_hook(self._called)

    def _called(self, *_: object) -> None:
        self.count += 1


class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x).relu())


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, -x


class _First(nn.Module):
    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return pair[0].relu()


@pytest.fixture
def demo_qv(demo_vit):
    return quantize_model(demo_vit, weight_clipping="minmax")


def _logits(qv, allocations, x) -> list[torch.Tensor]:
    with torch.no_grad():
        return [qv.apply(a)(x) for a in allocations]


def test_same_logits_as_full_forwards_with_only_the_changed_blocks_run(demo_qv):
    x = torch.randn(8, 1, 28, 28)
    allocations = _allocations(demo_qv.component_names())
    full = _logits(demo_qv, allocations, x)
    calls = _BlockCalls(demo_qv.model)
    with reusing_prefixes(demo_qv) as resume:
        reused = _logits(demo_qv, allocations, x)
        assert calls.count == 6 + 2 + 5 + 5  # all, blocks 4-5, blocks 1-5, blocks 1-5 again (0 is kept)
        again = _logits(demo_qv, allocations[-1:], torch.randn(8, 1, 28, 28))  # another input: from the start
        assert calls.count == 18 + 6 and len(resume.runs) == 2
    assert all(torch.equal(a, b) for a, b in zip(full, reused, strict=True))
    assert not torch.equal(full[0], full[1]) and again[0].shape == full[0].shape
    assert "forward" not in vars(demo_qv.model.blocks)  # the plain Sequential again
    _logits(demo_qv, allocations, x)
    assert calls.count == 24 + 4 * 6


def test_parameter_updates_calibration_gradients_and_patchwise_run_in_full(demo_qv):
    x = torch.randn(4, 1, 28, 28)
    names = demo_qv.component_names()
    allocation = BitAllocation.uniform("W8A8", names)
    calls = _BlockCalls(demo_qv.model)
    with reusing_prefixes(demo_qv):
        before = _logits(demo_qv, [allocation], x)[0]
        with torch.no_grad():  # an in-place update bumps the weight's version: block 2 on runs again
            demo_qv.model.blocks[2].mlp.fc1.weight.mul_(0.5)
        after = _logits(demo_qv, [allocation], x)[0]
        assert calls.count == 6 + 4 and not torch.equal(before, after)
        with torch.no_grad():  # so does any parameter of a block, component or not: blocks 4 and 5
            demo_qv.model.blocks[4].norm2.weight.add_(0.25)
        normed = _logits(demo_qv, [allocation], x)[0]
        assert calls.count == 10 + 2 and not torch.equal(after, normed)
        demo_qv.set_granularity("tensor")
        calibrate(demo_qv, x, allocation=allocation)  # an observing forward: in full
        static = _logits(demo_qv, [allocation] * 2, x)  # the static ranges: once in full, then kept
        assert calls.count == 12 + 6 + 6
        calibrate(demo_qv, 3 * x, allocation=allocation)  # new ranges: the kept runs are dropped
        recalibrated = _logits(demo_qv, [allocation], x)[0]
        assert calls.count == 24 + 6 + 6 and not torch.equal(static[1], recalibrated)
        demo_qv(x).sum().backward()  # gradients recorded: in full
        spec = PatchwiseSpec({"blocks.1": LayerSetting((0.5,), (8, 4))}).to_dict()
        _logits(demo_qv, [BitAllocation(dict(allocation.bits), spec)] * 2, x)
        assert calls.count == 36 + 6 + 2 * 6
    with torch.no_grad():
        assert torch.equal(demo_qv.apply(allocation)(x), recalibrated)


def test_any_sequential_model_resumes_and_one_without_runs_in_full():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    qv = quantize_model(model, trace=trace_model(model, input_size=(4,)))
    sequence, blocks = stage_sequence(qv)
    assert sequence is qv.model and [[c.component_name for c in b] for b in blocks] == [["0"], [], ["2"]]
    allocations = [BitAllocation({"0": Bits(8, 8), "2": Bits(w, 8)}) for w in (8, 4, 2)]
    x = torch.randn(3, 4)
    full = _logits(qv, allocations, x)
    first = []
    qv.model[0].register_forward_pre_hook(lambda *_: first.append(1))
    with reusing_prefixes(qv):
        assert all(torch.equal(a, b) for a, b in zip(full, _logits(qv, allocations, x), strict=True))
    assert len(first) == 1 and not torch.equal(full[0], full[2])

    paired = nn.Sequential(nn.Linear(4, 8), _Pair(), _First(), nn.Linear(8, 2)).eval()  # a tuple between blocks
    qv = quantize_model(paired, trace=trace_model(paired, input_size=(4,)))
    allocations = [BitAllocation({"0": Bits(8, 8), "3": Bits(w, 8)}) for w in (8, 4)]
    full = _logits(qv, allocations, x)
    with reusing_prefixes(qv) as resume:
        assert all(torch.equal(a, b) for a, b in zip(full, _logits(qv, allocations, x), strict=True))
        assert resume.runs == []  # nothing kept past a tuple, and nothing wrong either

    plain = _TwoLayers().eval()  # no nn.Sequential
    qv = quantize_model(plain, trace=trace_model(plain, input_size=(4,)))
    allocation = BitAllocation.uniform("W4A4", qv.component_names())
    expected = _logits(qv, [allocation], x)[0]
    with reusing_prefixes(qv) as resume:
        assert resume is None and torch.equal(_logits(qv, [allocation], x)[0], expected)
