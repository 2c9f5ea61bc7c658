"""Datasets: Fashion-MNIST parsed from its IDX files, and ImageFolder trees for timm models.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``; we parse the IDX format
ourselves (no download code: these machines reach no dataset hub).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from pmq.errors import PMQError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (optionally gzip-compressed) into an array, checking magic and size."""
    path = Path(path)
    if not path.is_file():
        raise PMQError(f"IDX file {path} not found: check the data folder or run `{FASHION_MNIST_INSTALL}`",
                       param="data_dir")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise PMQError(f"IDX file {path} is corrupt ({exc}): reinstall it (`{FASHION_MNIST_INSTALL}`)") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise PMQError(f"IDX file {path} has a bad magic number {raw[:4].hex() or '(empty)'}: "
                       "it is not an IDX file; name the Fashion-MNIST folder as the data folder", param="data_dir")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise PMQError(f"IDX file {path} is truncated inside its header: reinstall it")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise PMQError(f"IDX file {path} is truncated or padded: header says {expected} data bytes "
                       f"for shape {shape}, file has {len(raw) - header}; reinstall it")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_file(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise PMQError(f"Fashion-MNIST file {stem}[.gz] not found in {root}: run `{FASHION_MNIST_INSTALL}` "
                   "(as root) or name a data folder that holds the IDX files", param="data_dir")


def load_fashion_mnist_arrays(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one split ('train' or 'test')."""
    if split not in _SPLIT_PREFIX:
        raise PMQError(f"unknown split {split!r}: use 'train' or 'test'")
    folder = Path(root) if root is not None else FASHION_MNIST_DIR
    if not folder.is_dir():
        raise PMQError(f"Fashion-MNIST folder {folder} does not exist: run `{FASHION_MNIST_INSTALL}` "
                       "(as root) or name another data folder", param="data_dir")
    prefix = _SPLIT_PREFIX[split]
    images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise PMQError(f"Fashion-MNIST {split} files in {folder} disagree: images {images.shape}, "
                       f"labels {labels.shape}; reinstall them")
    return images, labels


def fashion_mnist(split: str, root: str | os.PathLike | None = None) -> TensorDataset:
    """Normalised float images (N, 1, 28, 28) and int64 labels, held in memory (it is small)."""
    images, labels = load_fashion_mnist_arrays(split, root)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


def image_folder(root: str | os.PathLike, split: str, model: torch.nn.Module) -> Dataset:
    """ImageNet-layout ``<root>/<split>/<class>/*.JPEG`` with the model's own timm transforms."""
    import timm.data
    from torchvision.datasets import ImageFolder

    folder = Path(root) / ("val" if split == "test" else "train")
    if not folder.is_dir():
        raise PMQError(f"image folder {folder} does not exist: the data folder must hold train/ and val/ "
                       "in ImageNet layout (<class>/<image>)", param="data_dir")
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=False)
    try:
        return ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise PMQError(f"image folder {folder} is not usable: {exc}") from None


@dataclass(frozen=True)
class DataSource:
    """Which images a model is evaluated and calibrated on."""

    kind: str  # "fashion-mnist" or "image-folder"
    root: Path | None

    def describe(self) -> str:
        where = self.root or FASHION_MNIST_DIR
        return f"{self.kind} ({where})"

    def dataset(self, split: str, model: torch.nn.Module | None = None) -> Dataset:
        if self.kind == "fashion-mnist":
            return fashion_mnist(split, self.root)
        if model is None:
            raise PMQError("an image-folder dataset needs the model for its transforms")
        return image_folder(self.root, split, model)


def data_source_for(model_name: str, data_dir: str | os.PathLike | None) -> DataSource:
    """The demo model reads Fashion-MNIST; timm models read an ImageFolder tree in ``data_dir``."""
    if model_name == "demo":
        return DataSource("fashion-mnist", Path(data_dir) if data_dir is not None else None)
    if data_dir is None:
        raise PMQError(f"model {model_name!r} needs images: name a data folder in ImageNet layout "
                       "(DIR/val/<class>/*.JPEG, DIR/train/... for calibration)", param="data_dir")
    return DataSource("image-folder", Path(data_dir))


def subset(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """The first ``limit`` items of a fixed seeded permutation (all when limit is None)."""
    n = len(dataset)
    if limit is None or limit >= n:
        return dataset
    if limit <= 0:
        raise PMQError(f"the image limit must be a positive number of images, got {limit}", param="limit")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
    return torch.utils.data.Subset(dataset, order.tolist())


def stack_images(dataset: Dataset, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded images and labels stacked into tensors (calibration sets, sensitivity batches)."""
    chosen = subset(dataset, n, seed)
    xs, ys = zip(*(chosen[i] for i in range(len(chosen))), strict=True)
    return torch.stack(xs), torch.as_tensor(ys)
