"""Train the demo ViT on Fashion-MNIST: seeded, with a progress bar and atomic checkpoints."""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pmq.data import fashion_mnist
from pmq.io import atomic_write, provenance, write_json
from pmq.models import DEMO_CHECKPOINT, DEMO_VIT_ARGS, create_demo_vit, load_model


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float | None = None
    """Linear learning-rate warm-up; None: one epoch from scratch, none when continuing from a checkpoint."""
    label_smoothing: float = 0.1
    augment: bool = True
    seed: int = 0


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 2-pixel shifts (pad-and-crop) and horizontal flips, vectorised over the batch."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    dx, dy = torch.randint(0, 5, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(28)[None]).view(n, 1, 28, 1).expand(n, 1, 28, 32)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(28)[None]).view(n, 1, 1, 28).expand(n, 1, 28, 28)
    shifted = shifted.gather(3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    shifted[flip] = shifted[flip].flip(-1)
    return shifted


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train_demo(out: Path | None, config: TrainConfig, data_dir: Path | None = None, init: Path | None = None) -> dict:
    """Train from scratch (or continue from ``init``); write ``out`` (default: the bundled demo checkpoint's
    path) and ``out.json`` (metrics + command). The record says where it wrote (``checkpoint``)."""
    out = DEMO_CHECKPOINT if out is None else Path(out)
    warmup_epochs = (0.0 if init else 1.0) if config.warmup_epochs is None else config.warmup_epochs
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_x, train_y = fashion_mnist("train", data_dir).tensors
    test_x, test_y = fashion_mnist("test", data_dir).tensors
    model = load_model("demo", init).model if init else create_demo_vit()
    previous_record = init.with_suffix(".json") if init else None
    previous = json.loads(previous_record.read_text()) if previous_record and previous_record.is_file() else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total, warmup = config.epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup))
                                                 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    history, start = [], time.time()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="step", leave=False)
        for step in bar:
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            images = augment(train_x[idx], generator) if config.augment else train_x[idx]
            logits = model(images)
            loss = F.cross_entropy(logits, train_y[idx], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        top1 = accuracy(model, test_x, test_y)
        history.append({"epoch": epoch + 1, "test_top1": top1, "elapsed_s": round(time.time() - start, 1)})
        tqdm.write(f"epoch {epoch + 1}: test top-1 {100 * top1:.2f}%")
        atomic_write(out, lambda p: torch.save({"model": model.state_dict()}, p))
    record = {
        "model_args": DEMO_VIT_ARGS,
        "checkpoint": str(out),
        "train_config": {**asdict(config), "warmup_epochs": warmup_epochs},
        "init": str(init) if init else None,
        "previous_stage": previous,
        "command": "pmq " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "pmq train",
        "history": history,
        "test_top1": history[-1]["test_top1"] if history else None,
        "provenance": provenance(dataset="fashion-mnist"),
    }
    write_json(out.with_suffix(".json"), record)
    return record
