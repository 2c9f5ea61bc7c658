"""The output folder as the sweep's resumable state, and the tables written from it.

``points/p<id>.json`` (one per finished point, written atomically: the resume state),
``allocations/<id>.json``, ``evals/<id>.json``; ``sweep.csv`` and ``pareto.csv`` at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import hwsim
from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.io import write_json
from pmq.sweep.space import Space

EVAL_COLUMNS = ("top1", "size_mb", "gbops", "images")
AREA_COLUMNS = hwsim.AreaBreakdown.columns()
PARETO_AXES = (("top1", -1.0), ("latency_s", 1.0), ("energy_pj", 1.0), ("area_mm2", 1.0))  # sign × value: minimised
Evaluator = Callable[[BitAllocation], Mapping[str, float]]


def digest(obj: Any) -> str:
    """sha256 of an object's canonical JSON (fingerprints, allocation ids)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=repr).encode()).hexdigest()


def claim(out: Path, fingerprint: str) -> None:
    """Refuse a folder that holds another sweep's results (a different fingerprint)."""
    manifest = out / "sweep.json"
    if not manifest.is_file():
        return
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        previous = None
    if previous != fingerprint:
        raise PMQError(f"{out} holds results of a different sweep (other space, budgets, model or settings): "
                       "name a new output folder, or delete this one to start over", param="out_dir")


def read_record(path: Path) -> dict | None:
    """A JSON object written by the store, or None when missing or damaged (the caller recomputes it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


class Store:
    """The output folder as the sweep's state: point, allocation and evaluation files."""

    def __init__(self, out: Path, fingerprint: str, n_budgets: int, evaluate: Evaluator) -> None:
        self.out, self.fingerprint, self.n_budgets, self.evaluate = out, fingerprint, n_budgets, evaluate
        for sub in ("points", "allocations", "evals"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def point_path(self, point: int) -> Path:
        return self.out / "points" / f"p{point:07d}.json"

    def load_point(self, point: int) -> dict | None:
        """The finished point, or None when it is missing, damaged (then recomputed) or of another sweep."""
        row = read_record(self.point_path(point))
        if row is None or row.get("fingerprint") != self.fingerprint:
            return None
        allocation_id = row.get("allocation_id")
        if allocation_id and read_record(self.out / "allocations" / f"{allocation_id}.json") is None:
            return None
        return row

    def has_design(self, design: int) -> bool:
        return all(self.load_point(design * self.n_budgets + b) is not None for b in range(self.n_budgets))

    def save_design(self, rows: list[dict]) -> None:
        """Write each row's allocation, then the point (atomically); new allocations are evaluated
        afterwards, all together (:meth:`evaluate_missing`)."""
        for index, row in enumerate(rows):
            row = {"point": row["design"] * self.n_budgets + index, **row, "fingerprint": self.fingerprint}
            components, patchwise = row.pop("allocation", None), row.pop("patchwise", None)
            if components is not None:  # a plain allocation keeps the id it had before patch-wise sweeps
                key = components if patchwise is None else {"components": components, "patchwise": patchwise}
                row["allocation_id"] = digest(key)[:16]
                path = self.out / "allocations" / f"{row['allocation_id']}.json"
                if read_record(path) is None:
                    BitAllocation.from_dict({"components": components, "patchwise": patchwise or {}}).save(path)
            write_json(self.point_path(row["point"]), row)

    def evaluation(self, allocation_id: str) -> dict:
        """Top-1 (and friends) of one allocation: evaluated once, then read from ``evals/``."""
        cached = self._evaluated(allocation_id)
        if cached is not None:
            return cached
        return self._evaluate(allocation_id, BitAllocation.load(self.out / "allocations" / f"{allocation_id}.json"))

    def evaluate_missing(self, progress: bool = True) -> int:
        """Evaluate every stored point's allocation that has no evaluation yet, in the order of their
        bits (component by component, as the model runs them), so that consecutive allocations share
        the longest front of the model (see ``SweepInputs.evaluating``). Returns how many."""
        ids = set()
        for path in (self.out / "points").glob("p*.json"):
            row = read_record(path)
            if row is not None and row.get("fingerprint") == self.fingerprint and row.get("allocation_id"):
                ids.add(row["allocation_id"])
        missing = {allocation_id: BitAllocation.load(self.out / "allocations" / f"{allocation_id}.json")
                   for allocation_id in ids if self._evaluated(allocation_id) is None}
        order = sorted(missing, key=lambda allocation_id: _bits_order(missing[allocation_id]))
        for allocation_id in tqdm(order, desc="evaluate", unit="allocation", disable=not progress or not order):
            self._evaluate(allocation_id, missing[allocation_id])
        return len(order)

    def _evaluated(self, allocation_id: str) -> dict | None:
        cached = read_record(self.out / "evals" / f"{allocation_id}.json")
        return cached if cached is not None and "top1" in cached else None

    def _evaluate(self, allocation_id: str, allocation: BitAllocation) -> dict:
        result = {key: value for key, value in dict(self.evaluate(allocation)).items() if key in EVAL_COLUMNS}
        if "top1" not in result:
            raise PMQError("the sweep's evaluate() must return a 'top1' entry")
        write_json(self.out / "evals" / f"{allocation_id}.json", result)
        return result

    def table_rows(self, space: Space) -> list[dict[str, Any]]:
        rows = []
        for design in space.designs:
            for b in range(self.n_budgets):
                row = self.load_point(design.id * self.n_budgets + b)
                if row is None:
                    raise PMQError(f"point {design.id * self.n_budgets + b} of {self.out} is missing after the run: "
                                   "rerun the same command to compute it")
                row.pop("fingerprint")
                evaluated = self.evaluation(row["allocation_id"]) if row.get("allocation_id") else {}
                rows.append({**row, "base": design.base, "kind": design.config["kind"],
                             **design.params, **design.columns, **evaluated})
        return rows


def _bits_order(allocation: BitAllocation) -> tuple:
    """Sort key: the bits component by component (execution order), then the patch-wise settings."""
    return tuple(str(bits) for _, bits in allocation.items()), json.dumps(allocation.patchwise, sort_keys=True,
                                                                          default=repr)


def table_columns(space: Space) -> list[str]:
    patchwise = ["rho", "levels"] if any(d.patchwise is not None for d in space.designs) else []
    return ["point", "design", "budget", "base", "kind", *space.parameters, *patchwise, "status", "error",
            "allocation_id", "omega", *EVAL_COLUMNS, "latency_s", "energy_pj", "edp_js", *AREA_COLUMNS,
            "cycles", "utilization", "mean_bits_w", "mean_bits_a"]


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key, "")) for key in columns})
    return buffer.getvalue()


def pareto_set(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The finished points that no other beats on top-1 (higher), latency, energy and area (lower) at once."""
    ok = [row for row in rows if row["status"] == "ok" and row.get("top1") is not None]
    if not ok:
        return []
    values = np.array([[sign * float(row[key]) for key, sign in PARETO_AXES] for row in ok])
    keep = []
    for i, value in enumerate(values):
        dominated = ((values <= value).all(axis=1) & (values < value).any(axis=1)).any()
        if not dominated:
            keep.append(ok[i])
    return keep
