"""Experiment: the demo model with seeded calibration images from the train split and test-set evaluation."""

from __future__ import annotations

import inspect

import pytest
import torch

from pmq.allocation import BitAllocation
from pmq.data import stack_images
from pmq.defaults import DEFAULT_CALIBRATION_IMAGES
from pmq.experiment import Experiment
from pmq.quant import DEFAULT_OBSERVER
from pmq.trace import size_mb


@pytest.fixture(scope="module")
def experiment() -> Experiment:
    return Experiment("demo", calibration_images=8, seed=3)


def test_calibration_images_are_seeded_train_images(experiment):
    images, labels = experiment.calibration_set
    assert images.shape == (8, 1, 28, 28) and labels.shape == (8,)
    train = experiment.source.dataset("train", experiment.loaded.model)
    again, again_labels = stack_images(train, 8, 3)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, stack_images(train, 8, 4)[0])  # the seed picks them
    assert (experiment.observer, experiment.seed) == (DEFAULT_OBSERVER, 3)
    assert inspect.signature(Experiment).parameters["calibration_images"].default == DEFAULT_CALIBRATION_IMAGES


def test_evaluation_counts_images_and_prices_the_allocation(experiment):
    allocation = BitAllocation.uniform("W4A8", experiment.component_names)
    result = experiment.evaluate(allocation, limit=16, progress=False)
    assert result.images == 16 and result.top1 * 16 == round(result.top1 * 16)  # a share of 16 images
    assert result.size_mb == size_mb(experiment.trace, allocation)
    assert result.gbops == experiment.trace.bops(allocation) / 1e9
    calibration_s = experiment.calibration_s
    assert calibration_s is not None and experiment.calibrate() == calibration_s  # calibrated once
    w8 = experiment.evaluate(BitAllocation.uniform("W8A8", experiment.component_names), limit=16, progress=False)
    assert w8.gbops == 2 * result.gbops  # BOPs scale with weight bits (same activation bits)
    assert w8.to_dict() == {"top1": w8.top1, "size_mb": w8.size_mb, "gbops": w8.gbops, "images": 16}
