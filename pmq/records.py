"""Typed summary records: what ``pmq search``, ``simulate`` and ``sweep`` put in their run folder's
``run.json`` (under ``summary``), and what the demo, ``pmq plot`` and the report read back.

Each top-level record carries a versioned ``schema`` tag (``SCHEMA``) in its JSON; readers refuse a
tag they do not know with one line, instead of failing on a missing key later. A layout change bumps
the version. Untagged summaries (written before the tags) are version 1 and are refused likewise.
Nested records (a measurement, a frontier, the patch-wise step) are versioned by their parent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pmq.errors import PMQError

R = TypeVar("R", bound="Record")


class Record:
    """``to_dict`` / ``from_dict`` for a dataclass; ``NESTED`` names the fields that hold records."""

    SCHEMA: ClassVar[str | None] = None
    NESTED: ClassVar[Mapping[str, type[Record]]] = {}

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for name in self.NESTED:
            if data[name] is not None:
                data[name] = data[name].to_dict()
        return {"schema": self.SCHEMA, **data} if self.SCHEMA else data

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record in ``data``; a PMQError (one line) for another schema or a missing entry."""
        if not isinstance(data, Mapping):
            raise PMQError(f"a {cls.__name__} record must be a JSON object, got {type(data).__name__}")
        if cls.SCHEMA and data.get("schema") != cls.SCHEMA:
            found = data.get("schema") or "untagged (an older pmq)"
            raise PMQError(f"summary schema {found} is not {cls.SCHEMA}, the one this pmq reads: "
                           "re-run the command that wrote it with this pmq")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        missing = [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING]
        if missing:
            raise PMQError(f"{cls.SCHEMA or cls.__name__} record lacks {missing[0]!r}: "
                           "re-run the command that wrote it")
        values = {f.name: data.get(f.name, f.default) for f in fields}
        for name, nested in cls.NESTED.items():
            if values[name] is not None:
                values[name] = nested.from_dict(values[name])
        return cls(**values)


@dataclass(frozen=True)
class Measurement(Record):
    """One allocation measured: top-1 on ``images`` test images, model size, BOPs, one simulation."""

    top1: float
    images: int
    size_mb: float
    gbops: float
    latency_s: float
    energy_pj: float
    cycles: int


@dataclass(frozen=True)
class Simulated(Record):
    """Whole-model cost of one allocation by ``hwsim.simulate`` (per image)."""

    cycles: int
    latency_s: float
    energy_pj: float
    bops: int

    @classmethod
    def of(cls, result: Any) -> Simulated:
        """From a ``hwsim.SimResult``."""
        return cls(result.cycles, result.latency_s, result.energy_pj, result.bops)


@dataclass(frozen=True)
class FrontierRecord(Record):
    """A frontier stored as a bits table (``file``: one row per point with ΣΩ and per-component costs).

    ``fixed_cost[objective]`` (base units) is what every allocation adds to a row's cost;
    ``unit_scale`` converts the first objective's base units to its report unit."""

    file: str
    points: int
    objectives: list[str]
    unit_scale: float
    resolution: float | None
    fixed_cost: dict[str, float]
    cost_range: dict[str, list[float]]


@dataclass(frozen=True)
class PatchwiseSummary(Record):
    """The patch-wise step on one allocation: budget, chosen per-layer settings, their cost and Ω.

    Costs are whole-model, in the objective's base units (BOPs, s, pJ); ``top1``, ``base_top1`` and
    the simulations are None when that part was not measured."""

    objective: str
    budget: str
    budget_base_units: float
    base_cost: float
    cost: float
    omega: float
    omega_method: str
    omega_images: int
    omega_s: float
    choices: int
    frontier_points: int
    layers: dict[str, str]
    top1: float | None = None
    base_top1: float | None = None
    base_simulated: Simulated | None = None
    patchwise_simulated: Simulated | None = None

    NESTED: ClassVar[Mapping[str, type[Record]]] = {"base_simulated": Simulated,
                                                    "patchwise_simulated": Simulated}


@dataclass(frozen=True)
class SearchSummary(Record):
    """A ``pmq search``: what was searched, the chosen allocation's ``measured`` numbers and, once
    written, its files. With the patch-wise step, ``measured`` is the patch-wise allocation's and
    ``before_patchwise`` the searched one's."""

    model: str
    model_tag: str
    data: str
    metric: str
    objective: str
    second_objective: str | None
    budget: str
    budget_value: float  # whole-model, in budget_unit
    budget_unit: str
    bit_choices: list[int]
    frontier_points: int
    sensitivity_s: float
    omega: float
    measured: Measurement
    accelerator: str
    accelerator_config: dict[str, Any]
    allocation_file: str | None = None
    frontier: FrontierRecord | None = None
    before_patchwise: Measurement | None = None
    patchwise: PatchwiseSummary | None = None

    SCHEMA: ClassVar[str | None] = "pmq.search-summary/2"
    NESTED: ClassVar[Mapping[str, type[Record]]] = {
        "measured": Measurement, "frontier": FrontierRecord, "before_patchwise": Measurement,
        "patchwise": PatchwiseSummary}


SIMULATION_FIELDS = ("accelerator", "method", "ops", "cycles", "latency_s", "energy_pj",
                     "energy_breakdown_pj", "bops", "macs", "utilization", "compute_cycles", "stall_cycles",
                     "dram_read_bits", "dram_write_bits", "area_mm2")
"""The entries of ``hwsim.SimResult.summary()`` a simulate summary keeps."""


@dataclass(frozen=True)
class SimulateSummary(Record):
    """A ``pmq simulate``: hwsim's whole-workload numbers, and what was simulated how."""

    accelerator: str
    method: str
    ops: int
    cycles: int
    latency_s: float
    energy_pj: float
    energy_breakdown_pj: dict[str, float]
    bops: int
    macs: int
    utilization: float
    compute_cycles: int
    stall_cycles: int
    dram_read_bits: int
    dram_write_bits: int
    area_mm2: float | None
    batch: int
    allocation: dict[str, Any]
    mapping: str
    accelerator_config: dict[str, Any]
    accelerator_sources: dict[str, Any]
    per_op_file: str | None = None

    SCHEMA: ClassVar[str | None] = "pmq.simulate-summary/2"

    @classmethod
    def of(cls, result: Any, accelerator: Any, *, batch: int, allocation: Mapping[str, Any],
           mapping: str) -> SimulateSummary:
        """From a ``hwsim.SimResult`` and the accelerator it ran on."""
        simulated = result.summary()
        return cls(**{name: simulated[name] for name in SIMULATION_FIELDS}, batch=batch,
                   allocation=dict(allocation), mapping=mapping, accelerator_config=accelerator.config,
                   accelerator_sources=accelerator.sources)


@dataclass(frozen=True)
class SweepSummary(Record):
    """A ``pmq sweep``: its inputs (``fingerprint`` covers all a point depends on) and, once finished,
    its counts (None while it runs)."""

    fingerprint: str
    space_file: str
    model_tag: str
    objective: str
    budgets: list[str]
    method: str
    bit_pairs: list[str]
    evaluation: str
    designs: int
    points: int
    parameters: list[str]
    executor: str
    failed_points: int | None = None
    pareto_points: int | None = None
    computed_designs: int | None = None
    wall_s: float | None = None

    SCHEMA: ClassVar[str | None] = "pmq.sweep-summary/2"


@dataclass(frozen=True)
class AllocationEntry(Record):
    """One allocation of a demo folder (``run.json`` ``allocations[label]``): how it was chosen and its files.

    ``budget`` is '' for uniform settings; ``base`` names the allocation a patch-wise one refines ('' else);
    ``ops[accelerator]`` is its per-op CSV there."""

    method: str
    metric: str
    objective: str
    budget: str
    base: str
    file: str
    ops: dict[str, str]


@dataclass(frozen=True)
class DemoSearch(Record):
    """One frontier of a demo folder (``run.json`` ``searches``): a (metric, objective) search's bits table.

    ``fixed_cost`` (base units) is what every allocation adds to a row's cost; ``unit_scale`` converts
    base units to ``unit`` (e.g. 1e3 for s → ms)."""

    metric: str
    objective: str
    accelerator: str
    fixed_cost: float
    unit: str
    unit_scale: float
    points: int
    frontier_csv: str
    resolution: float | None = None  # absent in folders written before frontiers had a resolution


SUMMARIES: dict[str, type[Record]] = {"search": SearchSummary, "simulate": SimulateSummary,
                                      "sweep": SweepSummary}
"""Run kind → the summary record its ``run.json`` holds. A demo's manifest is its own record
(:mod:`pmq.results`), with an :class:`AllocationEntry` per allocation and a :class:`DemoSearch` per
frontier."""


def read_summary(kind: str, data: Mapping[str, Any]) -> Record | None:
    """The typed summary of a run of ``kind`` (None for kinds without one)."""
    record = SUMMARIES.get(kind)
    return None if record is None else record.from_dict(data)
