"""Reusing the unchanged front of a model between evaluations of allocations that share it.

A sweep evaluates hundreds of allocations on the same test images. Sorted by their bits in execution
order, consecutive allocations share their first blocks (the 10k demo sweep: 3.1 of 6 on average),
and a block's output depends only on its input and its own components' bits. So, within
:func:`reusing_prefixes`, the model's stage sequence (the ``nn.Sequential`` holding the most quantized
components: a ViT's ``blocks``, a ResNet's largest ``layerN``) keeps each block's output for every
input it saw, and a forward whose input and first blocks' settings match a kept run resumes after them.
Logits are bit-identical to a full forward's (tested).

Reuse only holds while nothing but the allocation changes. So it pauses (full forwards) while
gradients are recorded, in training mode and for patch-wise allocations (their token bits follow the
activations) and for inputs or block outputs that are not tensors; a forward while any quantizer
observes (calibration) drops every kept run; and a block's key holds its components' quantizer settings
and the version counters of all its parameters, so an in-place update is never served stale outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pmq.quant.model import QuantModel
from pmq.quant.modules import QuantComponent
from pmq.quant.quantizers import ActQuantizer

DEFAULT_CACHE_BYTES = 512 << 20
"""Kept block outputs at most; a run larger than this (a big model at a big batch) is not kept."""


@dataclass(eq=False)  # found by identity: its tensors do not compare as booleans
class _Run:
    """One input to the stage sequence, the block settings it last ran with and each block's output."""

    input: Tensor
    keys: list[tuple] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.input, *self.outputs))


def stage_sequence(qv: QuantModel) -> tuple[nn.Sequential, list[list[QuantComponent]]] | None:
    """The ``nn.Sequential`` of ``qv`` holding the most components (two at least) and each of its
    blocks' components; None when the model has no such sequence."""
    components = qv.components()
    best, best_blocks, best_count = None, [], 1
    for path, module in qv.model.named_modules():
        if not isinstance(module, nn.Sequential) or len(module) < 2:
            continue
        prefix = f"{path}." if path else ""
        blocks = [[c for name, c in components.items() if f"{name}.".startswith(f"{prefix}{child}.")]
                  for child, _ in module.named_children()]
        count = sum(map(len, blocks))
        if count > best_count:
            best, best_blocks, best_count = module, blocks, count
    return None if best is None else (best, best_blocks)


class _Resume:
    """The stage sequence's forward while reuse is on (installed on the instance, removed on exit)."""

    def __init__(self, qv: QuantModel, sequence: nn.Sequential, blocks: list[list[QuantComponent]],
                 cache_bytes: int) -> None:
        self.qv, self.sequence, self.blocks, self.cache_bytes = qv, sequence, blocks, cache_bytes
        self.runs: list[_Run] = []  # most recently used last
        self.quantizers = [q for c in qv.components().values() for q in (c.quantizer_a, c.quantizer_w)
                           if isinstance(q, ActQuantizer)]

    def active(self) -> bool:
        if any(q.observing for q in self.quantizers):  # calibration: the ranges the kept runs saw change
            self.runs.clear()
            return False
        return self.qv.patchwise is None and not self.qv.training and not torch.is_grad_enabled()

    @staticmethod
    def _key(module: nn.Module, components: list[QuantComponent]) -> tuple:
        """A block's settings: its components' quantizers, and every parameter's version counter."""
        return (tuple((c.quantizer_a.extra_repr(), c.quantizer_w.extra_repr()) for c in components),
                tuple(p._version for p in module.parameters()))

    def __call__(self, x: Any) -> Any:
        if not isinstance(x, Tensor) or not self.active():
            return nn.Sequential.forward(self.sequence, x)
        keys = [self._key(module, components) for module, components in zip(self.sequence, self.blocks, strict=True)]
        run = next((r for r in self.runs if r.input.shape == x.shape and r.input.dtype == x.dtype
                    and torch.equal(r.input, x)), None)
        if run is None:
            run = _Run(x.clone())
        else:
            self.runs.remove(run)
        shared = 0
        while shared < min(len(run.keys), len(keys)) and run.keys[shared] == keys[shared]:
            shared += 1
        # the kept tensors are never handed out (a block may write its input in place): clones go in
        h = run.outputs[shared - 1].clone() if shared else x
        outputs = run.outputs[:shared]
        for block in list(self.sequence)[shared:]:
            h = block(h)
            if not isinstance(h, Tensor):  # a block passing tuples or dicts on: nothing kept from here
                return nn.Sequential.forward(self.sequence[len(outputs) + 1:], h)
            outputs.append(h.clone())
        run.keys, run.outputs = keys, outputs
        self._keep(run)
        return h

    def _keep(self, run: _Run) -> None:
        self.runs.append(run)
        while self.runs and sum(r.nbytes for r in self.runs) > self.cache_bytes:
            self.runs.pop(0)


@contextmanager
def reusing_prefixes(qv: QuantModel, cache_bytes: int = DEFAULT_CACHE_BYTES) -> Iterator[Any]:
    """Within the block, forwards of ``qv`` resume after the blocks an earlier forward already ran on
    the same input with the same settings. Parameters changed in place and calibration are detected;
    any other change to the model inside the block is not. Yields the resumer (None when the
    model has no stage sequence: forwards run in full)."""
    found = stage_sequence(qv)
    if found is None:
        yield None
        return
    sequence, blocks = found
    resume = _Resume(qv, sequence, blocks, cache_bytes)
    sequence.forward = resume
    try:
        yield resume
    finally:
        del sequence.forward
