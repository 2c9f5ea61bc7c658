"""Atomic result files and the provenance every result records."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see half a file.

    An interrupted run (Ctrl-C, SIGKILL) leaves either the old file or none, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions and settings that make a result file reproducible (torch/timm imported lazily)."""
    import numpy
    import timm
    import torch

    info: dict[str, Any] = {
        "pmq": _pmq_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    info.update(extra)
    return info


def _pmq_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pmq")
    except PackageNotFoundError:
        return "unknown"
