"""Atomic result files (one behaviour with ``hwsim``, see :mod:`hwsim.files`) and the provenance
every result records."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "provenance", "read_text", "write_json", "write_text"]

# hwsim.files is imported on first write: ``import hwsim`` loads the whole simulator, which reading or
# validating an allocation (pmq.allocation imports this module) must not pay for


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """:func:`hwsim.files.atomic_write`: ``write(tmp_path)``, then the file appears at ``path`` whole."""
    from hwsim.files import atomic_write as hwsim_atomic_write

    return hwsim_atomic_write(path, write)


def write_text(path: str | os.PathLike, text: str) -> Path:
    from hwsim.files import atomic_write_text

    return atomic_write_text(path, text)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Standard JSON only: NaN/Infinity raise ValueError instead of writing a file strict parsers reject."""
    from hwsim.files import atomic_write_text, json_text

    return atomic_write_text(path, json_text(obj))


def read_text(path: str | os.PathLike, what: str) -> str:
    """A user's text file as UTF-8; unreadable or non-UTF-8 bytes are a one-line PMQError naming ``what``."""
    from pmq.errors import PMQError

    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PMQError(f"{what} '{path}' is not UTF-8 text (byte {exc.start}: {exc.reason}): "
                       "save it as UTF-8") from None
    except OSError as exc:
        raise PMQError(f"{what} '{path}' cannot be read ({exc.strerror})") from None


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
