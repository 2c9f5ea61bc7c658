"""Run folders: the one output-folder format of ``pmq demo``, ``search``, ``simulate`` and ``sweep``.

Every command that writes results claims its folder with :class:`RunFolder` *before any work*:

1. the folder must be a folder (not a file) that this process can create and write;
2. ``.pmq.lock`` inside it is locked (``flock``, released by the kernel even on SIGKILL), so a
   second run into the same folder is refused with one line instead of mixing files;
3. temporary files a killed run left behind (``.*.tmp``, ``.pmq-staging-*``) are swept.

One-shot runs (search, simulate) write their files into a hidden staging folder, then
:meth:`RunFolder.publish` removes the old manifest, moves the files into place and writes the
manifest ``run.json`` last. The manifest lists every file with its size and sha256, so a folder is
either a complete set (its manifest checks out) or visibly incomplete; readers (:func:`read_run`,
``pmq plot``) trust only a manifest whose files check out. Incremental runs (demo, sweep) write
in place and mark the manifest ``complete`` at the end.

``run.json`` (``RUN_FORMAT``)::

    {"format": "pmq.run/1", "kind": "search",         # demo | search | simulate | sweep
     "complete": true, "created": "2026-...Z",
     "provenance": {"torch": ..., "timm": ..., "model_tag": ...},
     "summary": {"schema": "pmq.search-summary/2", ...},  # the kind's record (pmq.records)
     "files": {"frontier.csv": {"bytes": 123, "sha256": "..."}, ...}}
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hwsim.files import TEMP_GLOB
from pmq.errors import PMQError
from pmq.io import write_json
from pmq.records import FrontierRecord, Record, SearchSummary, SimulateSummary, read_summary

RUN_FORMAT = "pmq.run/1"
RUN_FILE = "run.json"
LOCK_FILE = ".pmq.lock"
STAGING_PREFIX = ".pmq-staging-"
KINDS = ("demo", "search", "simulate", "sweep")


class OutputFolderError(PMQError):
    """The output folder cannot be used (a file, read-only, locked by another run, inconsistent)."""

    def __init__(self, message: str, *, param: str | None = "out_dir") -> None:
        super().__init__(message, param=param)


def file_record(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_folder(path: str | os.PathLike) -> Path:
    """``path`` as a usable output folder, or an OutputFolderError saying why (nothing is created)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"output folder {path} is an existing file: name a folder (new or existing)")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputFolderError(f"output folder {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"output folder {path} is not writable ({existing} is read-only): "
                                "name a folder you can write")
    return path


@dataclass
class RunFolder:
    """A claimed output folder (see the module docstring). Use as a context manager::

        with RunFolder(out, "search") as run:
            ...                      # write into run.staging
            run.publish(summary, provenance=...)   # summary: a pmq.records record
    """

    root: Path
    kind: str
    _lock: int | None = field(default=None, init=False, repr=False)
    _created: list[Path] = field(default_factory=list, init=False, repr=False)
    _staging: Path | None = field(default=None, init=False, repr=False)
    published: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.kind not in KINDS:
            raise ValueError(f"unknown run kind {self.kind!r}")

    def __enter__(self) -> RunFolder:
        self.claim()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.release(failed=exc_type is not None)

    def claim(self) -> None:
        """Check, create and lock the folder, then sweep what killed runs left; all before any work."""
        check_output_folder(self.root)
        missing = [p for p in (self.root, *self.root.parents) if not p.exists()]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._created = missing
            fd = self._lock_file()
        except OSError as exc:
            raise OutputFolderError(f"output folder {self.root} is not writable ({exc.strerror}): "
                                    "name a folder you can write") from None
        if fd is None:
            raise OutputFolderError(f"output folder {self.root} is in use by another pmq run: wait for it "
                                    "to finish or name another folder")
        self._lock = fd
        self.sweep_stale()

    def _lock_file(self) -> int | None:
        """An fd holding the folder's lock, or None when another process holds it. The lock file is
        removed on release, so after locking we check that the file we locked is still the one at
        the path (else a releaser unlinked it meanwhile, and we try again)."""
        path = self.root / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                raise
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def sweep_stale(self) -> list[Path]:
        """Remove temporary files and staging folders of killed runs (safe: we hold the lock)."""
        removed = []
        for tmp in self.root.rglob(TEMP_GLOB):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        for staging in self.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
        return removed

    @property
    def staging(self) -> Path:
        """Hidden folder (inside the run folder, so renames are atomic) the one-shot files go to."""
        if self._staging is None:
            self._staging = self.root / f"{STAGING_PREFIX}{os.getpid()}"
            self._staging.mkdir()
        return self._staging

    def begin_in_place(self) -> None:
        """For runs that write in place (demo, sweep): drop the old manifest, so until :meth:`finish`
        the folder reads as incomplete."""
        (self.root / RUN_FILE).unlink(missing_ok=True)

    def publish(self, summary: Record, provenance: Mapping[str, Any]) -> Path:
        """Move every staged file into place and write ``run.json`` last; returns its path."""
        manifest = self.root / RUN_FILE
        manifest.unlink(missing_ok=True)
        staged = sorted(p for p in self.staging.rglob("*") if p.is_file())
        files = {}
        for path in staged:
            relative = path.relative_to(self.staging)
            files[str(relative)] = file_record(path)
            (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, self.root / relative)
        shutil.rmtree(self.staging, ignore_errors=True)
        self._staging = None
        return self.finish(summary, provenance, files)

    def finish(self, summary: Record, provenance: Mapping[str, Any],
               files: Mapping[str, Mapping[str, Any]] | None = None, names: tuple[str, ...] = ()) -> Path:
        """Write the manifest: ``files`` as given plus a fresh record of each name in ``names``."""
        records = dict(files or {})
        records.update({name: file_record(self.root / name) for name in names})
        path = write_json(self.root / RUN_FILE, {
            "format": RUN_FORMAT, "kind": self.kind, "complete": True,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "provenance": dict(provenance), "summary": summary.to_dict(), "files": records,
        })
        self.published = True
        return path

    def release(self, failed: bool = False) -> None:
        """Unlock and remove the lock file; a failed run that created the folder and published
        nothing leaves no folder."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if self._lock is None:
            return
        (self.root / LOCK_FILE).unlink(missing_ok=True)
        if failed and self._created and not self.published:
            for folder in self._created:  # deepest first; stops at the first one holding files
                try:
                    folder.rmdir()
                except OSError:
                    break
        os.close(self._lock)
        self._lock = None


@dataclass
class Run:
    """A run folder read back through its manifest (checked: every listed file has its size and hash);
    ``summary`` is the kind's typed record (:mod:`pmq.records`; None for a demo)."""

    root: Path
    kind: str
    summary: Record | None
    provenance: dict[str, Any]
    files: dict[str, dict[str, Any]]

    def path(self, name: str) -> Path:
        return self.root / name


def read_run(root: str | os.PathLike) -> Run:
    """The run in ``root``; a PMQError (one line) when it is missing, incomplete or altered."""
    import json

    from pmq.io import read_text

    root = Path(root)
    manifest = root / RUN_FILE
    if not manifest.is_file():
        raise PMQError(f"{root} has no {RUN_FILE}: it is not a finished pmq run folder "
                                "(the run was interrupted, or the folder was not written by pmq); re-run it")
    try:
        data = json.loads(read_text(manifest, "run manifest"))
    except json.JSONDecodeError as exc:
        raise PMQError(f"{manifest} is not valid JSON ({exc}): re-run the command that wrote it") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT or data.get("kind") not in KINDS:
        raise PMQError(f"{manifest} is not a {RUN_FORMAT} manifest: re-run the command that wrote it")
    for name, record in data.get("files", {}).items():
        path = root / name
        if not path.is_file():
            raise PMQError(f"{root} lacks {name} (listed in {RUN_FILE}): re-run the command that wrote it")
        if file_record(path) != dict(record):
            raise PMQError(f"{path} differs from what {RUN_FILE} recorded (truncated, or written by "
                                    "another run): re-run the command that wrote it")
    try:
        summary = read_summary(data["kind"], data.get("summary", {}))
    except PMQError as exc:
        raise PMQError(f"{manifest}: {exc}") from None
    return Run(root, data["kind"], summary, data.get("provenance", {}), data.get("files", {}))


def default_out(kind: str, *parts: str) -> Path:
    """``results/<kind>-<part>-...`` with every part made file-safe (``0.5x:W8A8`` → ``0.5x_W8A8``)."""
    safe = [part.replace(":", "_").replace("/", "_") for part in parts]
    return Path("results") / "-".join([kind, *safe])


def write_simulation(folder: RunFolder, result: Any, summary: SimulateSummary, *,
                     model_tag: str) -> SimulateSummary:
    """A ``simulate`` run: ``per_op.csv`` (hwsim's per-op table of ``result``) and the manifest;
    returns the summary as recorded."""
    from pmq.io import provenance

    result.to_csv(folder.staging / "per_op.csv")
    summary = dataclasses.replace(summary, per_op_file="per_op.csv")
    folder.publish(summary, provenance(model_tag=model_tag))
    return summary


def write_search(folder: RunFolder, result: Any) -> SearchSummary:
    """A ``search`` run: ``frontier.csv`` (one row per frontier point: Ω, costs, bits per component),
    ``allocation.json`` (the chosen allocation) and the manifest; returns the summary as recorded.

    The frontier is stored once, as a bits table: each point's allocation is its row.
    """
    from pmq.io import provenance

    front = result.frontier
    front.to_csv(folder.staging / "frontier.csv", key_format=str)
    result.allocation.save(folder.staging / "allocation.json")
    summary = dataclasses.replace(result.summary, allocation_file="allocation.json", frontier=FrontierRecord(
        file="frontier.csv", points=len(front), objectives=list(front.objectives),
        unit_scale=result.costs.in_units(front.objectives[0], 1.0), resolution=front.resolution,
        fixed_cost={o: result.costs.fixed[o] for o in front.objectives},
        cost_range={o: [front.cost_min[j], front.cost_max[j]] for j, o in enumerate(front.objectives)}))
    folder.publish(summary, provenance(model_tag=summary.model_tag))
    return summary


def run_kind(root: str | os.PathLike) -> str | None:
    """The ``kind`` a folder's manifest declares (None: no readable manifest); no files are checked."""
    import json

    try:
        data = json.loads((Path(root) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("kind") if isinstance(data, dict) else None
