"""One model, its trace, its quantized wrapper and its data: what evaluate, search and demo share.

Loading, tracing, wrapping, calibrating and reading the test set happen once per ``Experiment``;
every allocation evaluated afterwards reuses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch.utils.data import Dataset

import pmq.patchwise.runtime  # noqa: F401  (registers the patch-wise runtime with the quantized wrapper)
from pmq.allocation import BitAllocation
from pmq.data import DataSource, data_source_for, stack_images
from pmq.defaults import DEFAULT_CALIBRATION_IMAGES
from pmq.evaluate import evaluate_top1
from pmq.models import LoadedModel, load_model
from pmq.quant import DEFAULT_GRANULARITY, DEFAULT_OBSERVER, QuantModel, calibrate, quantize_model
from pmq.trace import ModelTrace, TracedGemm, size_mb, trace_model


@dataclass(frozen=True)
class EvalResult:
    top1: float
    size_mb: float
    gbops: float
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


class Experiment:
    """A loaded model wrapped for quantization, with its calibration and test images."""

    def __init__(self, model: str, checkpoint: str | Path | None = None, pretrained: bool = False,
                 data_dir: str | Path | None = None, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                 observer: str | None = None, seed: int = 0, granularity: str | None = None,
                 input_size: tuple[int, ...] | None = None) -> None:
        """``granularity``: activation ranges per ``token`` (dynamic, the default) or per ``tensor``
        (static, fitted by ``observer`` on the calibration images)."""
        self.loaded: LoadedModel = load_model(model, checkpoint, pretrained, input_size)
        self.source: DataSource = data_source_for(model, data_dir)
        self.trace: ModelTrace = trace_model(self.loaded.model, self.loaded.input_size, name=self.loaded.name)
        self.qv: QuantModel = quantize_model(self.loaded.model, granularity or DEFAULT_GRANULARITY, trace=self.trace)
        # the observer only ranges per-tensor activations (per-token ones, the default, need none)
        self.calibration_size, self.observer, self.seed = calibration_images, observer or DEFAULT_OBSERVER, seed
        self.calibration_s: float | None = None

    @property
    def component_names(self) -> list[str]:
        return self.qv.component_names()

    @cached_property
    def test_set(self) -> Dataset:
        return self.source.dataset("test", self.loaded.model)

    @cached_property
    def calibration_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeded images (and labels) from the train split, never from the test set."""
        return stack_images(self.source.dataset("train", self.loaded.model), self.calibration_size, self.seed)

    @property
    def costs(self) -> dict[str, TracedGemm]:
        return self.trace.components()

    def calibrate(self) -> float:
        if self.calibration_s is None:
            self.calibration_s = calibrate(self.qv, self.calibration_set[0], self.observer)
        return self.calibration_s

    def evaluate(self, allocation: BitAllocation, limit: int | None = None, progress: bool = True) -> EvalResult:
        self.qv.apply(allocation)
        self.calibrate()
        top1 = evaluate_top1(self.qv, self.test_set, limit, progress=progress)
        images = len(self.test_set) if limit is None else min(limit, len(self.test_set))
        return EvalResult(top1, size_mb(self.trace, allocation), self.trace.bops(allocation) / 1e9, images)
