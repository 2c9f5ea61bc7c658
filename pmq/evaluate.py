"""Top-1 accuracy of a (quantized) model on a dataset."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from pmq.data import subset


def evaluate_top1(model: nn.Module, dataset: Dataset, limit: int | None = None, batch_size: int = 256,
                  progress: bool = True) -> float:
    """Fraction of correct top-1 predictions on ``dataset`` (the first ``limit`` of a seeded order)."""
    data = subset(dataset, limit)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        with torch.no_grad():
            for images, labels in tqdm(loader, desc="evaluate", unit="batch", disable=not progress or len(loader) <= 1):
                correct += int((model(images).argmax(dim=-1) == labels).sum())
                total += len(labels)
    finally:
        model.train(was_training)
    return correct / total
