"""The results folder: what ``pmq demo`` writes and what ``pmq plot`` and the report read back.

Layout (every file written atomically, as soon as it is final, so an interrupted run leaves a
readable folder of whatever had finished)::

    run.json                         manifest (``pmq.run/1``, kind ``demo``, see :mod:`pmq.runs`): provenance,
                                     model, data, accelerator configs, the path of every other file below
                                     and, once complete, each file's size and sha256 (``pmq plot`` checks them)
    points.csv                       one row per allocation × accelerator (``POINT_FIELDS``)
    allocations/<label>.json         BitAllocation JSON, loadable by `pmq evaluate/simulate --allocation`
    ops/<label>/<accelerator>.csv    hwsim per-op table (cycles, latency, energy parts per op)
    frontiers/<metric>-<objective>.csv   the exact Pareto frontier of each search (Ω, cost, bits per component)
    patchwise/token_bits.json        optional, see ``TOKEN_BITS_FORMAT``
    figures/*.pdf|png|svg, report.md written from the files above, never from live objects

Costs in ``points.csv`` are per image, each column named with its unit: ``size_mb`` (MB = 10^6
bytes), ``gbops`` (10^9 BOPs), ``latency_s``, ``energy_*_pj``; ``budget`` is the text given
(``0.4x:W8A8``), ``budget_factor`` its multiple (0.4) and ``budget_value`` the whole-model budget in
``budget_unit`` (the objective's: MB, GBOPs, ms, uJ). Frontier costs are the per-component sums the search optimises;
the search entry in ``run.json`` carries the ``fixed_cost`` every allocation adds (base units).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim.result import ENERGY_PARTS
from pmq.allocation import BitAllocation
from pmq.budget import Budget
from pmq.errors import PMQError
from pmq.io import read_text, write_json, write_text
from pmq.methods import METHODS, MethodStyle, method_style
from pmq.records import AllocationEntry, DemoSearch, Measurement
from pmq.runs import RUN_FILE, RUN_FORMAT, file_record

RESULTS_FORMAT = "pmq.results/1"
"""The demo manifest's layout before it became a kind of :data:`pmq.runs.RUN_FORMAT` (still read)."""
POINTS_FILE = "points.csv"
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
TOKEN_BITS_FILE = "patchwise/token_bits.json"
TOKEN_BITS_FORMAT = "pmq.token_bits/1"
"""``patchwise/token_bits.json``::

    {"format": "pmq.token_bits/1",
     "patch_size": 4,                       # pixels per patch side
     "operand": "q",                        # which token-row operand the bits are of
     "allocation": "pmq-latency-0.85x+pw",  # the allocation they come from
     "images": [{"label": "Sandal",         # caption for the image
                 "pixels": [[...], ...],    # H × W grey values in [0, 1]
                 "bits": {"blocks.0": [[...], ...], ...}}]}   # per layer: (H/p) × (W/p) bits, 0 = float
"""

POINT_FIELDS = (
    "label", "method", "metric", "objective", "budget", "budget_factor", "budget_value", "budget_unit", "accelerator",
    "top1", "images", "size_mb", "gbops", "omega", "latency_s", "energy_pj", "cycles", "utilization",
    *(f"energy_{part}_pj" for part in ENERGY_PARTS), "allocation_file", "ops_file",
)
_TEXT_FIELDS = {"label", "method", "metric", "objective", "budget", "budget_unit", "accelerator", "allocation_file",
                "ops_file"}
_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")


def budget_factor(budget: str) -> float | None:
    """``"0.4x:W8A8"`` → 0.4; an absolute or base-relative (``0.97x``) budget has no factor (None)."""
    try:
        return Budget.parse(budget).of_setting
    except PMQError:
        return None


def allocation_label(method: str, objective: str, budget: str) -> str:
    """File-safe label of a searched allocation: ``pmq-latency-0.85x`` (uniform ones are their setting)."""
    factor = budget_factor(budget)
    slug = f"{factor:g}x" if factor is not None else re.sub(r"[^A-Za-z0-9_.-]", "_", budget)
    return f"{method}-{objective}-{slug}"


@dataclass(frozen=True)
class Measured(Measurement):
    """What one allocation measured on one accelerator: one row of ``points.csv`` minus the labels."""

    utilization: float
    energy_breakdown_pj: Mapping[str, float]
    omega: float | None = None


class ResultsWriter:
    """Writes a results folder file by file; ``run.json`` and ``points.csv`` are rewritten
    (atomically) after every allocation, so they always describe the finished part of a run."""

    def __init__(self, root: str | Path, run_info: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.run: dict[str, Any] = {
            "format": RUN_FORMAT, "kind": "demo", "complete": False, **run_info,
            "allocations": {}, "methods": {}, "searches": [], "highlight": [], "patchwise": None, "figures": [],
            "report": None,
        }
        self.rows: list[dict[str, Any]] = []
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_manifest()

    def _write_manifest(self) -> None:
        write_json(self.root / RUN_FILE, self.run)

    def _write_points(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=POINT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in POINT_FIELDS})
        write_text(self.root / POINTS_FILE, buffer.getvalue())

    def add_allocation(self, label: str, method: str, allocation: BitAllocation,
                       measured: Mapping[str, Measured], per_op_csv: Mapping[str, Any], *,
                       metric: str = "", objective: str = "", budget: str = "",
                       budget_value: float | None = None, budget_unit: str = "", base: str = "") -> None:
        """Record one allocation: its JSON, one per-op CSV and one ``points.csv`` row per accelerator.

        ``per_op_csv[accelerator]`` is an object with ``to_csv(path)`` (a ``hwsim.SimResult``);
        ``base`` names the allocation a relative budget without ``:SETTING`` refers to (patch-wise).
        """
        if not _LABEL.match(label):
            raise PMQError(f"allocation label {label!r} must use only letters, digits, '.', '_' and '-'")
        style = METHODS.lookup(method)  # any registered method: uniform, patchwise, every metric
        allocation_file = f"allocations/{label}.json"
        allocation.save(self.root / allocation_file)
        ops = {}
        for accelerator, result in per_op_csv.items():
            ops[accelerator] = f"ops/{label}/{accelerator}.csv"
            result.to_csv(self.root / ops[accelerator])
        self.rows = [row for row in self.rows if row["label"] != label]
        for accelerator, m in measured.items():
            self.rows.append({
                "label": label, "method": method, "metric": metric, "objective": objective, "budget": budget,
                "budget_factor": budget_factor(budget), "budget_value": budget_value, "budget_unit": budget_unit,
                "accelerator": accelerator,
                "top1": m.top1, "images": m.images, "size_mb": m.size_mb, "gbops": m.gbops, "omega": m.omega,
                "latency_s": m.latency_s, "energy_pj": m.energy_pj, "cycles": m.cycles,
                "utilization": m.utilization,
                **{f"energy_{part}_pj": m.energy_breakdown_pj.get(part, 0.0) for part in ENERGY_PARTS},
                "allocation_file": allocation_file, "ops_file": ops.get(accelerator, ""),
            })
        self.run["methods"][method] = style.to_dict()  # figures are drawn from the folder alone
        entry = AllocationEntry(method, metric, objective, budget, base, allocation_file, ops)
        self.run["allocations"][label] = entry.to_dict()
        self._write_points()
        self._write_manifest()

    def add_frontier(self, metric: str, objective: str, frontier: Any, fixed_cost: float, unit_scale: float,
                     unit: str, accelerator: str) -> None:
        """Write one search's frontier (a ``pmq.pareto.Frontier``) as a CSV bits table (one row per point).

        ``fixed_cost`` (base units) is what every allocation adds to the frontier's per-component
        cost; ``unit_scale`` converts base units to ``unit`` (e.g. 1e3 for s → ms).
        """
        stem = f"frontiers/{metric}-{objective}"
        frontier.to_csv(self.root / f"{stem}.csv", key_format=str)
        self.run["searches"] = [s for s in self.run["searches"]
                                if (s["metric"], s["objective"]) != (metric, objective)]
        self.run["searches"].append(DemoSearch(metric, objective, accelerator, fixed_cost, unit, unit_scale,
                                               len(frontier), f"{stem}.csv", frontier.resolution).to_dict())
        self._write_manifest()

    def add_token_bits(self, record: Mapping[str, Any]) -> None:
        """Write ``patchwise/token_bits.json`` (a ``TOKEN_BITS_FORMAT`` record, made by
        ``pmq.patchwise.maps.token_bits_record``) and list it in the manifest."""
        write_json(self.root / TOKEN_BITS_FILE, dict(record))
        self.run["patchwise"] = TOKEN_BITS_FILE
        self._write_manifest()

    def update(self, **entries: Any) -> None:
        """Set top-level manifest entries (``highlight``, ``figures``, ``report``, ``runtime_s`` ...)."""
        self.run.update(entries)
        self._write_manifest()

    def complete(self, **entries: Any) -> None:
        """Mark the run complete, recording size and sha256 of every data file (written last; figures
        and the report are drawn from those files and may be redrawn, so they are not recorded)."""
        self.run.update(entries, complete=True)
        self.run["files"] = {name: file_record(self.root / name) for name in dict.fromkeys(referenced_files(self.run))}
        self._write_manifest()


@dataclass
class Results:
    """A results folder read back: the manifest (its records typed: ``entries`` per allocation label,
    ``searches`` per frontier), the points, and lazy access to the other files."""

    root: Path
    run: dict[str, Any]
    points: list[dict[str, Any]]
    entries: dict[str, AllocationEntry] = field(init=False)
    searches: list[DemoSearch] = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.entries = {label: AllocationEntry.from_dict(entry)
                            for label, entry in self.run.get("allocations", {}).items()}
            self.searches = [DemoSearch.from_dict(search) for search in self.run.get("searches", [])]
        except PMQError as exc:
            raise PMQError(f"{self.root / RUN_FILE}: {exc}", param="results_dir") from None

    @property
    def accelerators(self) -> list[str]:
        return list(dict.fromkeys(p["accelerator"] for p in self.points))

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(p["label"] for p in self.points))

    @property
    def primary_accelerator(self) -> str:
        return self.run.get("search", {}).get("primary_accelerator") or self.accelerators[0]

    @property
    def baseline(self) -> tuple[str, str]:
        """(accelerator, uniform setting) that speedups and energy savings are measured against."""
        base = self.run.get("baseline", {})
        return base.get("accelerator", "int8_systolic"), base.get("allocation", "W8A8")

    def style(self, method: str) -> MethodStyle:
        """How ``method`` is drawn: as recorded in ``run.json``, else as registered."""
        return method_style(method, self.run.get("methods"))

    def where(self, **match: Any) -> list[dict[str, Any]]:
        return [p for p in self.points if all(p.get(k) == v for k, v in match.items())]

    def point(self, label: str, accelerator: str) -> dict[str, Any] | None:
        found = self.where(label=label, accelerator=accelerator)
        return found[0] if found else None

    def allocation(self, label: str) -> BitAllocation:
        return BitAllocation.load(self.root / self.entries[label].file)

    def ops(self, label: str, accelerator: str) -> list[dict[str, Any]]:
        """Per-op rows (numbers parsed) of ``label`` on ``accelerator``."""
        return read_csv(self.root / self.entries[label].ops[accelerator])

    def frontier(self, metric: str, objective: str) -> tuple[list[float], list[float]]:
        """(ΣΩ, whole-model cost in the search's report unit) per frontier point, cost ascending."""
        search = self.search(metric, objective)
        rows = read_csv(self.root / search.frontier_csv, numeric=("omega", objective))
        scale, fixed = search.unit_scale, search.fixed_cost
        return [r["omega"] for r in rows], [(r[objective] + fixed) * scale for r in rows]

    def search(self, metric: str, objective: str) -> DemoSearch:
        for entry in self.searches:
            if (entry.metric, entry.objective) == (metric, objective):
                return entry
        raise PMQError(f"results folder {self.root} has no {metric} search on {objective}")

    def token_bits(self) -> dict[str, Any] | None:
        if not self.run.get("patchwise"):
            return None
        data = json.loads((self.root / self.run["patchwise"]).read_text())
        if data.get("format") != TOKEN_BITS_FORMAT:
            raise PMQError(f"{self.root / self.run['patchwise']} is not {TOKEN_BITS_FORMAT}: rewrite it "
                           "with ResultsWriter.add_token_bits")
        return data


def referenced_files(run: Mapping[str, Any]) -> list[str]:
    """Every file the manifest names (relative paths), in a stable order."""
    files = [POINTS_FILE]
    for entry in run.get("allocations", {}).values():
        files.append(entry["file"])
        files.extend(entry.get("ops", {}).values())
    for search in run.get("searches", []):
        files.append(search["frontier_csv"])
    if run.get("patchwise"):
        files.append(run["patchwise"])
    return files


def load_results(root: str | Path) -> Results:
    """Read a demo's results folder; a missing or unreadable file is a PMQError naming it (one line)."""
    root = Path(root)
    rerun = "re-run the demo into that folder"

    def fail(message: str) -> PMQError:
        return PMQError(message, param="results_dir")

    if not root.is_dir():
        raise fail(f"results folder {root} not found: run the demo into it first")
    run_path = root / RUN_FILE
    if not run_path.is_file():
        raise fail(f"results folder {root} lacks {RUN_FILE}: it was not written by the demo; {rerun}")
    try:
        run = json.loads(read_text(run_path, "results manifest"))
    except json.JSONDecodeError as exc:
        raise fail(f"{run_path} is not valid JSON ({exc}): {rerun}") from None
    if not isinstance(run, dict) or not (run.get("format") == RESULTS_FORMAT
                                         or (run.get("format") == RUN_FORMAT and run.get("kind") == "demo")):
        raise fail(f"{run_path} is not a demo manifest: {rerun}")
    for relative in referenced_files(run):
        if not (root / relative).is_file():
            raise fail(f"results folder {root} lacks {relative} (named in {RUN_FILE}): restore it or {rerun}")
    for relative, record in run.get("files", {}).items():
        if (root / relative).is_file() and file_record(root / relative) != record:
            raise fail(f"{root / relative} differs from what {RUN_FILE} recorded (truncated or edited): "
                       f"{rerun}")
    points = read_csv(root / POINTS_FILE)
    missing = [name for name in ("label", "method", "accelerator", "top1") if points and name not in points[0]]
    if missing:
        raise fail(f"{root / POINTS_FILE} lacks column {missing[0]!r}: {rerun}")
    if not points:
        raise fail(f"{root / POINTS_FILE} has no rows: the run stopped before its first allocation; {rerun}")
    return Results(root, run, points)


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else value


def read_csv(path: Path, numeric: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows with numbers parsed (every non-text column, or just ``numeric``); '' → None."""
    rows: list[dict[str, Any]] = []
    text = read_text(path, "results table")
    if text and not text.endswith("\n"):
        raise PMQError(f"{path} is truncated (its last line is cut off): re-run the command that wrote it")
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        if None in row or None in row.values():
            raise PMQError(f"{path} line {line} has {'more' if None in row else 'fewer'} cells than its header "
                           "(truncated or edited): re-run the command that wrote it")
        parsed: dict[str, Any] = {}
        for key, cell in row.items():
            if numeric is not None and key not in numeric:
                continue
            parsed[key] = cell if key in _TEXT_FIELDS or key in ("name", "kind", "tile") else _number(cell)
        rows.append(parsed)
    return rows


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
