"""IDX parsing of good and corrupt files, and the real Fashion-MNIST package."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from pmq.data import FASHION_MNIST_DIR, data_source_for, fashion_mnist, read_idx
from pmq.errors import PMQError


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, images, compress):
    raw = _idx_bytes(images)
    path = tmp_path / ("x.idx3-ubyte.gz" if compress else "x.idx3-ubyte")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(read_idx(path), images)


def test_read_idx_rejects_bad_magic(tmp_path, images):
    raw = bytearray(_idx_bytes(images))
    raw[2] = 0x42
    (tmp_path / "bad").write_bytes(bytes(raw))
    with pytest.raises(PMQError, match="bad magic number"):
        read_idx(tmp_path / "bad")


def test_read_idx_rejects_truncated_data(tmp_path, images):
    (tmp_path / "short").write_bytes(_idx_bytes(images)[:-10])
    with pytest.raises(PMQError, match="truncated"):
        read_idx(tmp_path / "short")


def test_read_idx_rejects_truncated_header(tmp_path):
    (tmp_path / "hdr").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(PMQError, match="truncated inside its header"):
        read_idx(tmp_path / "hdr")


def test_read_idx_rejects_truncated_gzip(tmp_path, images):
    (tmp_path / "cut.gz").write_bytes(gzip.compress(_idx_bytes(images))[:200])
    with pytest.raises(PMQError, match="corrupt"):
        read_idx(tmp_path / "cut.gz")


def test_missing_folder_names_the_install_command(tmp_path):
    with pytest.raises(PMQError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist("test", tmp_path / "nope")


def test_real_fashion_mnist_package():
    test = fashion_mnist("test")
    x, y = test.tensors
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)
    assert sorted(y.unique().tolist()) == list(range(10))
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05  # normalised with the known stats
    assert FASHION_MNIST_DIR.is_dir()


def test_timm_models_need_an_image_folder():
    with pytest.raises(PMQError, match="needs images: name a data folder") as exc:
        data_source_for("deit_tiny_patch16_224", None)
    assert exc.value.param == "data_dir"  # the CLI names it --data
