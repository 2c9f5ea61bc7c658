"""Atomic result files, shared by hwsim and pmq: one behaviour for every file PMQ writes.

A file is written under a hidden temporary name in its own folder (``.<name>.<token>.tmp``) and
renamed onto its final name, so a reader (or a run killed mid-write) sees the old file or the new
one, never a torn one. The temporary file is created with mode 0666 and the process umask applies
as for any ``open()``: no process-wide state is touched. Leftovers of killed runs match
:data:`TEMP_GLOB` and are swept by the next run into the same folder (``pmq.runs``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_GLOB = ".*.tmp"
"""Names of temporary files that a killed write can leave behind."""


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path`` (same folder, so atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask applies, like open()
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) atomically."""
    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    return atomic_write(path, write)


def json_text(obj: Any) -> str:
    """Standard JSON (RFC 8259: no NaN or Infinity), indented; a non-finite number is a ValueError
    here rather than a file other tools cannot parse."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
