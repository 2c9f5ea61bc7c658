"""Content-addressed cache of sensitivity results.

The key hashes everything the numbers depend on: the model's weights and structure, the images and
labels, the metric (name, version, options), the bit candidates, every quantizer's settings
(granularity, weight clipping, calibrated ranges) and the source of ``pmq.quant`` (a change in the
fake-quantization arithmetic changes every Δ; changes to a metric's own code bump its ``version``).
Equal inputs give the same file, so a second call returns without running a single pass; any
change gives a new key.

Where: ``$PMQ_CACHE_DIR`` or ``~/.cache/pmq/sensitivity``. What: one JSON file per (model, images,
metric, bits, quantizer settings), ``<metric>-<key>.json``, holding Ω per component and bit width
plus timings and provenance (16 kB for the demo model's ``pmq`` metric), nothing else: no weights,
no images. Deleting the folder only costs recomputation; if
it cannot be written the run goes on with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import pmq.quant
from pmq.errors import PMQError
from pmq.quant import ActQuantizer, QuantModel
from pmq.sensitivity.result import Sensitivity

CACHE_ENV = "PMQ_CACHE_DIR"


class CacheWarning(UserWarning):
    """The cache could not be written; results are unaffected."""

KEY_VERSION = 1


def default_cache_dir() -> Path:
    """``$PMQ_CACHE_DIR`` or ``~/.cache/pmq/sensitivity``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    try:
        return Path.home() / ".cache" / "pmq" / "sensitivity"
    except RuntimeError:  # no $HOME and no passwd entry: cache in the temp folder
        import tempfile

        return Path(tempfile.gettempdir()) / "pmq-cache" / "sensitivity"


def _hash_tensor(digest: Any, tensor: Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{tuple(tensor.shape)}|{tensor.dtype}|".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")


@cache
def code_fingerprint() -> str:
    """sha256 of the source files of ``pmq.quant`` (read once per process)."""
    digest = hashlib.sha256()
    for source in sorted(Path(pmq.quant.__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _quantizer_settings(qv: QuantModel, bits: list[int]) -> dict[str, Any]:
    settings = {}
    for name, component in qv.components().items():
        entry = {"kind": component.kind}
        for role, quantizer in (("a", component.quantizer_a), ("w", component.quantizer_w)):
            if isinstance(quantizer, ActQuantizer):
                observer = quantizer.observer
                ranges = [observer.range(b) for b in bits] if observer is not None and observer.ready else None
                entry[role] = {"granularity": quantizer.granularity, "reduce_dim": quantizer.reduce_dim,
                               "observer": type(observer).__name__ if observer is not None else None,
                               "ranges": ranges}
            else:
                entry[role] = {"clipping": quantizer.clipping}
        settings[name] = entry
    return settings


def cache_key(qv: QuantModel, images: Tensor, labels: Tensor, metric: str, version: int, bits: list[int],
              options: dict[str, Any]) -> str:
    """sha256 over (weights, images, labels, metric@version, bits, options, quantizer settings, code)."""
    digest = hashlib.sha256()
    header = {"key_version": KEY_VERSION, "metric": metric, "metric_version": version, "bits": bits,
              "options": options, "model": type(qv.model).__name__,
              "quantizers": _quantizer_settings(qv, bits), "quant_code": code_fingerprint()}
    digest.update(json.dumps(header, sort_keys=True, default=repr).encode())
    for name, tensor in qv.model.state_dict().items():
        digest.update(name.encode())
        _hash_tensor(digest, tensor)
    _hash_tensor(digest, images)
    _hash_tensor(digest, labels)
    return digest.hexdigest()


def cache_path(cache_dir: Path, metric: str, key: str) -> Path:
    return cache_dir / f"{metric}-{key[:32]}.json"


def load_cached(path: Path, key: str) -> Sensitivity | None:
    """The cached result at ``path`` if it is intact and has this key; a damaged file counts as a miss."""
    if not path.is_file():
        return None
    try:
        result = Sensitivity.load(path)
    except PMQError:
        return None
    if result.cache_key != key:
        return None
    result.from_cache = True
    return result
