"""Hardware / bit-budget co-design sweeps: accelerator parameters × bit budgets → best allocation per point.

A *design* is one accelerator (a base description with some key paths changed); a *point* is a
design at one bit budget, i.e. one row of the result table. The space file (YAML)::

    designs:                                   # or, for one entry, base/grid/random at the top level
      - base: [bitfusion, int8_systolic]       # preset names or YAML paths; each is swept
        grid:                                  # every combination of these values
          array.rows: [8, 16, 32]
          buffers.filter: [32768, 65536]
      - base: bitfusion
        random:                                # a seeded sample
          samples: 20
          seed: 0
          parameters:
            buffers.ifmap: [16384, 32768, 65536]                 # a list: one of these values
            dram.bandwidth_bits_per_cycle: {min: 64, max: 256}   # integer bounds: an integer
            clock_hz: {min: 2.0e+8, max: 1.0e+9, log: true}      # log-uniform
    budgets: ["0.25x:W8A8", "0.5x:W8A8"]       # optional here: --budgets overrides
    objective: latency                         # optional here: --objective overrides

Work is split so that torch never leaves the parent process: the parent computes the sensitivity
Ω once (cached by content hash), traces the model once, and evaluates top-1 once per
distinct allocation (cached under ``OUT/evals``). Each design is priced by :func:`price_design`,
which needs only hwsim, the accelerator models and the Pareto search (``import pmq.sweep`` loads no
torch), on local processes or on a dask.distributed cluster. Per design it builds the cost table
(:func:`pmq.search.cost_table`), the exact frontier, and for each budget the least-Ω allocation
that fits (:func:`pmq.search.choose`), priced whole-model by ``hwsim.estimate_workload`` (or
``hwsim.simulate``), plus :func:`hwsim.area`.

Output folder: ``sweep.json`` (inputs, fingerprint, provenance), ``points/p<id>.json`` (one per
finished point, written atomically, the resume state), ``allocations/<id>.json``, ``evals/<id>.json``,
and at the end ``sweep.csv`` (every point, sorted by point id) and ``pareto.csv`` (the points no other
point beats on top-1, latency, energy and area at once). A rerun on the same folder computes only
the designs with missing points; a failing point (e.g. a TileError: a buffer too small for a
layer) is recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from tqdm.auto import tqdm

import accelerators
import hwsim
from hwsim.errors import HwsimError
from pmq.allocation import BitAllocation, Bits
from pmq.errors import PMQError
from pmq.io import write_json, write_text
from pmq.pareto import frontier, parse_budget
from pmq.search import (
    DEFAULT_BIT_CHOICES,
    HARDWARE_OBJECTIVES,
    bit_pairs,
    choose,
    cost_table,
    pareto_table,
    resolve_budget,
)
from pmq.trace.graph import ModelTrace

if TYPE_CHECKING:
    from pmq.experiment import Experiment

FORMAT = "pmq.sweep/1"
EXECUTORS = ("local", "dask")
METHODS = ("estimate", "simulate")
SPACE_KEYS = ("designs", "base", "grid", "random", "budgets", "objective")
ENTRY_KEYS = ("base", "grid", "random")
RANDOM_KEYS = ("samples", "seed", "parameters")
RANGE_KEYS = ("min", "max", "log")
FIXED_KEYS = ("name", "kind", "description", "sources")  # not sweepable: `base` picks the kind
EVAL_COLUMNS = ("top1", "size_mb", "gbops", "images")
AREA_COLUMNS = hwsim.AreaBreakdown.columns()
_NO_DASK = "--executor dask needs dask.distributed: pip install 'pmq[distributed]'"
PARETO_AXES = (("top1", -1.0), ("latency_s", 1.0), ("energy_pj", 1.0), ("area_mm2", 1.0))  # sign × value: minimised


# ---------------------------------------------------------------------------------------------
# The space file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """One accelerator of the sweep: its base, the key paths changed from it, the full description."""

    id: int
    base: str
    params: dict[str, Any]
    config: dict[str, Any]


@dataclass
class Space:
    """The validated space: designs in id order, the key paths any design varies, optional defaults."""

    source: str
    designs: list[Design]
    parameters: list[str]
    budgets: list[str] | None
    objective: str | None
    data: dict[str, Any]


def load_space(path: str | os.PathLike) -> Space:
    """Read and validate a space YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PMQError(f"space file {path} not found: pass a YAML file (see `pmq sweep --help`)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PMQError(f"space '{path}': malformed YAML{where}; fix the syntax") from None
    return space_from_dict(data, str(path))


def space_from_dict(data: Any, source: str = "<space>") -> Space:
    """Validate a parsed space; every error is one line that names the key and the fix."""
    def fail(message: str) -> PMQError:
        return PMQError(f"space '{source}': {message}")

    if not isinstance(data, dict):
        raise fail(f"the document must be a mapping with 'designs' (or 'base') and 'budgets', got {type(data).__name__}")
    _check_keys(data, SPACE_KEYS, "the top level", fail)
    if "designs" in data:
        inline = [key for key in ENTRY_KEYS if key in data]
        if inline:
            raise fail(f"'{inline[0]}' at the top level and 'designs' both given: put it inside a designs entry")
        entries = data["designs"]
        if not isinstance(entries, list) or not entries:
            raise fail("designs must be a non-empty list of entries with a 'base'")
    elif "base" in data:
        entries = [{key: data[key] for key in ENTRY_KEYS if key in data}]
    else:
        raise fail("no designs: give 'base' (with 'grid' or 'random') or a 'designs' list")

    designs: list[Design] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        entry_fail = fail if "designs" not in data else (
            lambda message, number=number: fail(f"designs[{number}]: {message}"))
        for base, params in _expand_entry(entry, entry_fail):
            config = _with_params(base.config, params)
            identity = json.dumps({key: value for key, value in config.items() if key != "name"}, sort_keys=True)
            if identity in seen:
                continue
            seen.add(identity)
            design_id = len(designs)
            config["name"] = f"{base.config['name']}#{design_id}"
            shown = ", ".join(f"{key}={value!r}" for key, value in params.items()) or "as given"
            try:
                accel = accelerators.from_dict(config, source=f"{base.name} ({shown})")
                hwsim.area(accel)
            except HwsimError as err:
                raise fail(str(err)) from None
            designs.append(Design(design_id, base.name, params, accel.config))

    budgets = data.get("budgets")
    if budgets is not None and (not isinstance(budgets, list) or not budgets
                                or not all(isinstance(b, str) and b.strip() for b in budgets)):
        raise fail(f"budgets must be a non-empty list of strings like \"0.5x:W8A8\", got {budgets!r}")
    objective = data.get("objective")
    if objective is not None:
        try:
            check_sweep_objective(objective)
        except PMQError as err:
            raise fail(str(err)) from None
    parameters = sorted({key for design in designs for key in design.params})
    return Space(source, designs, parameters, budgets, objective, data)


@dataclass(frozen=True)
class _Base:
    name: str
    config: dict[str, Any]


def _check_keys(data: dict, allowed: Sequence[str], where: str, fail: Callable[[str], PMQError]) -> None:
    unknown = [str(key) for key in data if key not in allowed]
    if unknown:
        raise fail(f"unknown key '{unknown[0]}' in {where}; allowed: {', '.join(allowed)}")


def _expand_entry(entry: Any, fail: Callable[[str], PMQError]) -> Iterator[tuple[_Base, dict]]:
    if not isinstance(entry, dict):
        raise fail("an entry must be a mapping with 'base' and optionally 'grid' or 'random'")
    _check_keys(entry, ENTRY_KEYS, "a designs entry", fail)
    if "base" not in entry:
        raise fail(f"no 'base': name a preset ({', '.join(accelerators.available())}) or a YAML file")
    names = entry["base"] if isinstance(entry["base"], list) else [entry["base"]]
    if not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise fail("base must be a preset name, a YAML path or a non-empty list of them")
    if "grid" in entry and "random" in entry:
        raise fail("both 'grid' and 'random' given: use one per entry (add another entry for the other)")
    for name in names:
        try:
            base = _Base(name, accelerators.load(name).config)
        except HwsimError as err:
            raise fail(str(err)) from None
        if "random" in entry:
            yield from ((base, params) for params in _random(entry["random"], base, fail))
        else:
            yield from ((base, params) for params in _grid(entry.get("grid") or {}, base, fail))


def _grid(grid: Any, base: _Base, fail: Callable[[str], PMQError]) -> Iterator[dict]:
    if not isinstance(grid, dict):
        raise fail("grid must map key paths (e.g. array.rows) to lists of values")
    axes = {key: values if isinstance(values, list) else [values] for key, values in grid.items()}
    for key, values in axes.items():
        if not values:
            raise fail(f"grid {key} is an empty range; give at least one value")
        for value in values:
            _check_value(base, key, value, fail)
    combos: list[list[tuple[str, Any]]] = [[]]
    for key, values in axes.items():
        combos = [combo + [(key, value)] for combo in combos for value in values]
    return (dict(combo) for combo in combos)


def _random(spec: Any, base: _Base, fail: Callable[[str], PMQError]) -> Iterator[dict]:
    if not isinstance(spec, dict):
        raise fail("random must be a mapping with samples, seed and parameters")
    _check_keys(spec, RANDOM_KEYS, "random", fail)
    samples, seed, parameters = spec.get("samples"), spec.get("seed", 0), spec.get("parameters")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise fail(f"random.samples must be a positive integer, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise fail(f"random.seed must be an integer, got {seed!r}")
    if not isinstance(parameters, dict) or not parameters:
        raise fail("random.parameters must map key paths to a list of values or {min, max}")
    draws = {key: _sampler(base, key, parameters[key], fail) for key in sorted(parameters)}
    rng = random.Random(seed)
    return ({key: draw(rng) for key, draw in draws.items()} for _ in range(samples))


def _sampler(base: _Base, key: str, spec: Any, fail: Callable[[str], PMQError]):
    if isinstance(spec, list):
        if not spec:
            raise fail(f"random {key} is an empty range; give at least one value")
        for value in spec:
            _check_value(base, key, value, fail)
        return lambda rng: rng.choice(spec)
    if not isinstance(spec, dict) or not {"min", "max"} <= set(spec):
        raise fail(f"random {key} must be a list of values or {{min: .., max: ..}}, got {spec!r}")
    _check_keys(spec, RANGE_KEYS, f"random {key}", fail)
    lo, hi, log = spec["min"], spec["max"], spec.get("log", False)
    current = _check_value(base, key, lo, fail)
    _check_value(base, key, hi, fail)
    if isinstance(current, str):
        raise fail(f"random {key} takes text values: give a list, not min/max")
    if not isinstance(log, bool):
        raise fail(f"random {key}.log must be true or false, got {log!r}")
    if lo > hi:
        raise fail(f"random {key} is an empty range (min {lo} > max {hi}); swap them")
    if log and lo <= 0:
        raise fail(f"random {key} is log-uniform, so min must be > 0, got {lo}")
    integer = isinstance(current, int) or (isinstance(lo, int) and isinstance(hi, int))

    def draw(rng: random.Random):
        if log:
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            return min(max(round(value), lo), hi) if integer else value
        return rng.randint(lo, hi) if integer else rng.uniform(lo, hi)

    return draw


def _check_value(base: _Base, key: str, value: Any, fail: Callable[[str], PMQError]) -> Any:
    """Check that ``key`` is a leaf of the base description and ``value`` has its type; returns the base value."""
    if not isinstance(key, str) or not key:
        raise fail(f"parameter {key!r} must be a key path such as array.rows")
    if key.split(".")[0] in FIXED_KEYS:
        raise fail(f"parameter {key} cannot be swept; choose the accelerator kind with 'base'")
    node: Any = base.config
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            parent = ".".join(key.split(".")[:depth]) or "the top level"
            known = ", ".join(node) if isinstance(node, dict) else "none"
            raise fail(f"parameter {key} is not a key of accelerator '{base.name}' "
                       f"(keys under {parent}: {known})")
        node = node[part]
    if isinstance(node, dict):
        raise fail(f"parameter {key} is a section of '{base.name}', not a value; name one of its "
                   f"keys: {', '.join(f'{key}.{sub}' for sub in node)}")
    if isinstance(node, bool) or node is None:
        ok = isinstance(value, type(node))
        wanted = "true or false" if isinstance(node, bool) else "null"
    elif isinstance(node, int):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(node, float):
        ok, wanted = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    else:
        ok, wanted = isinstance(value, str), "text"
    if not ok:
        raise fail(f"{key} value {value!r} has the wrong type; '{base.name}' needs {wanted} "
                   f"(it has {node!r})")
    return node


def _with_params(config: dict, params: Mapping[str, Any]) -> dict:
    config = copy.deepcopy(config)
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def check_sweep_objective(objective: str | None) -> str:
    if not objective:
        raise PMQError(f"no objective: pass --objective ({' or '.join(HARDWARE_OBJECTIVES)}) or add 'objective' "
                       "to the space file")
    if objective not in HARDWARE_OBJECTIVES:
        raise PMQError(f"sweep objective {objective!r}: use one of {', '.join(HARDWARE_OBJECTIVES)} "
                       "(the quantity the chosen allocation minimises Ω under)")
    return objective


# ---------------------------------------------------------------------------------------------
# Per-design pricing (torch-free: runs on workers)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricingInputs:
    """What every design needs, shipped to each worker once: Ω per component and bit pair, the
    model's trace (torch-free; its GEMMs are the components), the search settings."""

    component_names: tuple[str, ...]
    omega: dict[str, dict[Bits, float]]
    trace: ModelTrace
    objective: str
    budgets: tuple[str, ...]
    method: str = "estimate"

    @property
    def workload(self) -> hwsim.Workload:
        """The model's workload at W8A8 (hardware costs per component are priced from it)."""
        return self.trace.workload(BitAllocation.uniform("W8A8", self.component_names))


def price_design(inputs: PricingInputs, design_id: int, config: dict) -> list[dict[str, Any]]:
    """One row per budget for one design: the chosen allocation and its latency, energy, EDP, area.

    User-level failures (a TileError, a budget outside this design's range) become rows with
    ``status = "failed"`` and the error; anything else is a bug and propagates.
    """
    accel = accelerators.from_dict(config, source=config["name"])
    area = hwsim.area(accel).as_dict()
    names, objective = list(inputs.component_names), inputs.objective
    rows = [{"design": design_id, "budget": budget, "status": "ok", "error": "", **area}
            for budget in inputs.budgets]
    try:
        # hardware objectives read only the component names from the per-component costs
        costs = cost_table(dict.fromkeys(names), 0, bit_pairs_of(inputs.omega), [objective],
                           inputs.workload, accel)
        front = frontier(pareto_table(inputs.omega, costs, [objective]), [objective])
    except (HwsimError, PMQError) as err:
        return [_failed(row, err) for row in rows]
    for row in rows:
        try:
            allocation = choose(front, costs, objective, resolve_budget(costs, objective, row["budget"], names))
            result = _run(inputs.trace.workload(allocation), accel, inputs.method)
        except (HwsimError, PMQError) as err:
            _failed(row, err)
            continue
        row.update(
            omega=math.fsum(inputs.omega[name][bits] for name, bits in allocation.items()),
            latency_s=result.latency_s,
            energy_pj=result.energy_pj,
            edp_js=result.latency_s * result.energy_pj * 1e-12,
            cycles=result.cycles,
            utilization=result.utilization,
            **_mean_bits(inputs.workload, allocation),
            allocation=allocation.to_dict()["components"],
        )
    return rows


def bit_pairs_of(omega: Mapping[str, Mapping[Bits, float]]) -> list[Bits]:
    """The bit pairs Ω is given for (the same for every component)."""
    return list(next(iter(omega.values())))


def _failed(row: dict, err: Exception) -> dict:
    row.update(status="failed", error=f"{type(err).__name__}: {err}")
    return row


def _run(workload: hwsim.Workload, accel: hwsim.Accelerator, method: str) -> hwsim.SimResult:
    return hwsim.simulate(workload, accel) if method == "simulate" else hwsim.estimate_workload(workload, accel)


def _mean_bits(workload: hwsim.Workload, allocation: BitAllocation) -> dict[str, float]:
    """MAC-weighted mean weight and activation bits of the allocation."""
    gemms = [op for op in workload.ops if isinstance(op, hwsim.Gemm) and op.name in allocation.bits]
    macs = sum(op.macs for op in gemms)
    return {
        "mean_bits_w": sum(op.macs * allocation[op.name].w for op in gemms) / macs,
        "mean_bits_a": sum(op.macs * allocation[op.name].a for op in gemms) / macs,
    }


_WORKER_INPUTS: PricingInputs | None = None


def _init_worker(inputs: PricingInputs, parent: int) -> None:
    """Keep the inputs for every task; leave Ctrl-C to the parent; exit if the parent dies (SIGKILL)."""
    global _WORKER_INPUTS
    _WORKER_INPUTS = inputs
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _price_in_worker(design_id: int, config: dict) -> list[dict[str, Any]]:
    assert _WORKER_INPUTS is not None, "worker not initialised"
    return price_design(_WORKER_INPUTS, design_id, config)


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


def _run_local(inputs: PricingInputs, designs: list[Design], workers: int | None) -> Iterator[list[dict]]:
    """Process pool over all cores; workers are spawned (not forked), so they never hold torch."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(designs)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(inputs, os.getpid()))
    try:
        futures = [pool.submit(_price_in_worker, d.id, d.config) for d in designs]
        for future in as_completed(futures):
            yield future.result()
    finally:  # on Ctrl-C or an error: drop what has not started, do not wait for it
        pool.shutdown(wait=False, cancel_futures=True)


def _run_dask(inputs: PricingInputs, designs: list[Design], scheduler: str) -> Iterator[list[dict]]:
    """Submit one task per design to the cluster; the inputs are broadcast to every worker once.

    Pricing is pure Python, so workers should run one thread each; their statistical profiler
    (``distributed.worker.profile.enabled``) costs it some 10-15% (benchmarks/sweep_speed.py).
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise PMQError(_NO_DASK) from None
    try:
        client = Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as err:
        raise PMQError(f"cannot reach the dask scheduler at {scheduler!r} ({type(err).__name__}): "
                       "start one (`dask scheduler`) or pass its address with --scheduler") from None
    try:
        shared = client.scatter(inputs, broadcast=True)
        futures = [client.submit(price_design, shared, d.id, d.config, pure=False) for d in designs]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


Evaluator = Callable[[BitAllocation], Mapping[str, float]]


@dataclass
class SweepInputs:
    """The model side of a sweep, prepared once in the parent.

    ``evaluate(allocation)`` returns at least ``top1`` (and optionally size_mb, gbops, images);
    ``evaluation`` describes how (data, image count) so cached results are only reused for the same
    setting; ``provenance`` is recorded in ``sweep.json``.
    """

    component_names: list[str]
    omega: dict[str, dict[Bits, float]]
    trace: ModelTrace
    model_tag: str
    evaluate: Evaluator
    evaluation: str
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    out: Path
    table: Path
    pareto: Path
    rows: list[dict[str, Any]]
    computed_designs: int
    wall_s: float

    @property
    def failed(self) -> int:
        return sum(row["status"] != "ok" for row in self.rows)


def run_sweep(space: Space | str | os.PathLike, inputs: SweepInputs, out: str | os.PathLike,
              objective: str | None = None, budgets: Sequence[str] | None = None, *,
              executor: str = "local", scheduler: str | None = None, workers: int | None = None,
              method: str = "estimate", progress: bool = True) -> SweepResult:
    """Price every point of ``space`` (designs × budgets), resuming from what ``out`` already holds.

    ``objective``/``budgets`` default to the space file's. ``executor="local"`` uses a process pool
    (``workers``, default all cores); ``"dask"`` submits to the dask.distributed scheduler at
    ``scheduler``. The table is the same whichever executor, and whether or not the run was
    interrupted and restarted. Local workers are spawned, so a script that calls this needs the
    ``if __name__ == "__main__":`` guard.
    """
    start = time.perf_counter()
    space = space if isinstance(space, Space) else load_space(space)
    pairs = bit_pairs_of(inputs.omega)
    objective, budgets = _check_settings(space, objective, budgets, pairs, executor, scheduler, method)
    out = Path(out)
    pricing = PricingInputs(tuple(inputs.component_names), inputs.omega, inputs.trace, objective,
                            tuple(budgets), method)
    fingerprint = _fingerprint(space, pricing, inputs)
    manifest = {
        "format": FORMAT, "fingerprint": fingerprint, "space_file": space.source,
        "space": json.loads(json.dumps(space.data, default=str)),
        "model_tag": inputs.model_tag, "objective": objective, "budgets": budgets, "method": method,
        "bit_pairs": [str(b) for b in pairs], "evaluation": inputs.evaluation,
        "designs": len(space.designs), "points": len(space.designs) * len(budgets),
        "parameters": space.parameters, "provenance": inputs.provenance,
    }
    _claim(out, fingerprint)
    write_json(out / "sweep.json", manifest)

    store = _Store(out, fingerprint, len(budgets), inputs)
    pending = [d for d in space.designs if not store.has_design(d.id)]
    results = (_run_local(pricing, pending, workers) if executor == "local"
               else _run_dask(pricing, pending, scheduler))
    bar = tqdm(total=len(pending), unit="design", desc="sweep", disable=not progress or not pending)
    try:
        if pending:
            for rows in results:
                store.save_design(rows)
                bar.update(1)
    finally:
        bar.close()
        results.close()
    store.evaluate_missing()
    rows = store.table_rows(space)
    best = pareto_set(rows)
    table = write_text(out / "sweep.csv", _csv(rows, _columns(space)))
    pareto = write_text(out / "pareto.csv", _csv(best, _columns(space)))
    wall = time.perf_counter() - start
    write_json(out / "sweep.json", {**manifest, "failed_points": sum(r["status"] != "ok" for r in rows),
                                    "pareto_points": len(best), "executor": executor,
                                    "computed_designs": len(pending), "wall_s": wall})
    return SweepResult(out, table, pareto, rows, len(pending), wall)


def _check_settings(space: Space, objective: str | None, budgets: Sequence[str] | None, pairs: Sequence[Bits],
                    executor: str, scheduler: str | None, method: str) -> tuple[str, list[str]]:
    """The objective and budgets in force (arguments over the space file's), all settings checked."""
    objective = check_sweep_objective(objective or space.objective)
    budgets = list(budgets or space.budgets or [])
    if not budgets:
        raise PMQError("no budgets: pass --budgets (e.g. 0.5x:W8A8 0.25x:W8A8) or add 'budgets' to the space file")
    if executor not in EXECUTORS:
        raise PMQError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise PMQError("--executor dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.1:8786)")
    if executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise PMQError(_NO_DASK)
    if method not in METHODS:
        raise PMQError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    _check_budgets(budgets, pairs)
    return objective, budgets


def _check_budgets(budgets: Sequence[str], pairs: Sequence[Bits]) -> None:
    """Fail before any work on a budget that no design could resolve (syntax, unknown setting)."""
    settings = {str(b) for b in pairs}

    def uniform(setting: str) -> float:
        if str(Bits.parse(setting)) not in settings:
            raise PMQError(f"budget setting {setting!r} is not among the bit pairs searched "
                           f"({', '.join(sorted(settings))}): use one of them, e.g. 0.5x:W8A8")
        return 1.0

    for budget in budgets:
        parse_budget(budget, uniform)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=repr).encode()).hexdigest()


def _fingerprint(space: Space, pricing: PricingInputs, inputs: SweepInputs) -> str:
    """Everything a point's numbers depend on; a folder holding another sweep is refused."""
    return _digest({
        "format": FORMAT,
        "designs": [d.config for d in space.designs],
        "objective": pricing.objective, "budgets": pricing.budgets, "method": pricing.method,
        "omega": {name: {str(b): repr(v) for b, v in row.items()} for name, row in pricing.omega.items()},
        "workload": [[type(op).__name__, *map(repr, dataclasses.astuple(op)),
                      sorted(pricing.workload.graph.predecessors(op.name))] for op in pricing.workload.ops],
        "model_tag": inputs.model_tag, "evaluation": inputs.evaluation,
    })


def _claim(out: Path, fingerprint: str) -> None:
    manifest = out / "sweep.json"
    if not manifest.is_file():
        return
    try:
        previous = json.loads(manifest.read_text()).get("fingerprint")
    except (OSError, json.JSONDecodeError, AttributeError):
        previous = None
    if previous != fingerprint:
        raise PMQError(f"{out} holds results of a different sweep (other space, budgets, model or settings): "
                       "pass a new --out, or delete the folder to start over")


class _Store:
    """The output folder as the sweep's state: point, allocation and evaluation files."""

    def __init__(self, out: Path, fingerprint: str, n_budgets: int, inputs: SweepInputs) -> None:
        self.out, self.fingerprint, self.n_budgets, self.inputs = out, fingerprint, n_budgets, inputs
        for sub in ("points", "allocations", "evals"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def point_path(self, point: int) -> Path:
        return self.out / "points" / f"p{point:07d}.json"

    def load_point(self, point: int) -> dict | None:
        path = self.point_path(point)
        if not path.is_file():
            return None
        row = json.loads(path.read_text())
        return row if row.get("fingerprint") == self.fingerprint else None

    def has_design(self, design: int) -> bool:
        return all(self.point_path(design * self.n_budgets + b).is_file() for b in range(self.n_budgets))

    def save_design(self, rows: list[dict]) -> None:
        """Write each row's allocation, then the point (atomically), then evaluate new allocations."""
        for index, row in enumerate(rows):
            row = {"point": row["design"] * self.n_budgets + index, **row, "fingerprint": self.fingerprint}
            components = row.pop("allocation", None)
            if components is not None:
                row["allocation_id"] = _digest(components)[:16]
                path = self.out / "allocations" / f"{row['allocation_id']}.json"
                if not path.is_file():
                    BitAllocation.from_dict({"components": components}).save(path)
            write_json(self.point_path(row["point"]), row)
            if components is not None:
                self.evaluation(row["allocation_id"])

    def evaluation(self, allocation_id: str) -> dict:
        """Top-1 (and friends) of one allocation: evaluated once, then read from ``evals/``."""
        path = self.out / "evals" / f"{allocation_id}.json"
        if path.is_file():
            return json.loads(path.read_text())
        allocation = BitAllocation.load(self.out / "allocations" / f"{allocation_id}.json")
        result = {key: value for key, value in dict(self.inputs.evaluate(allocation)).items() if key in EVAL_COLUMNS}
        if "top1" not in result:
            raise PMQError("the sweep's evaluate() must return a 'top1' entry")
        write_json(path, result)
        return result

    def evaluate_missing(self) -> None:
        for path in sorted((self.out / "points").glob("p*.json")):
            row = json.loads(path.read_text())
            if row.get("fingerprint") == self.fingerprint and row.get("allocation_id"):
                self.evaluation(row["allocation_id"])

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
                             **design.params, **evaluated})
        return rows


def _columns(space: Space) -> list[str]:
    return ["point", "design", "budget", "base", "kind", *space.parameters, "status", "error",
            "allocation_id", "omega", *EVAL_COLUMNS, "latency_s", "energy_pj", "edp_js", *AREA_COLUMNS,
            "cycles", "utilization", "mean_bits_w", "mean_bits_a"]


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
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


# ---------------------------------------------------------------------------------------------
# The model side (torch, in the parent only)
# ---------------------------------------------------------------------------------------------


def model_inputs(experiment: Experiment, metric: str = "pmq", bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES,
                 sensitivity_images: int = 64, limit: int | None = None) -> SweepInputs:
    """Ω (computed once, cached by content hash), the W8A8 workload and a top-1 evaluator for a
    :class:`pmq.experiment.Experiment`."""
    from pmq.io import provenance
    from pmq.sensitivity import compute_sensitivity, get_metric

    get_metric(metric)
    names = experiment.component_names
    images, labels = experiment.calibration_set
    sensitivity = compute_sensitivity(experiment.qv, images[:sensitivity_images], labels[:sensitivity_images],
                                      metric=metric, bits=tuple(bit_choices), progress=False)
    omega = {name: {b: sensitivity.omega(name, b) for b in bit_pairs(bit_choices)} for name in names}

    def evaluate(allocation: BitAllocation) -> dict[str, float]:
        return experiment.evaluate(allocation, limit, progress=False).to_dict()

    images_used = "all" if limit is None else f"first {limit}"
    evaluation = (f"{experiment.source.describe()}; {images_used} test images; metric {metric} on "
                  f"{min(sensitivity_images, len(images))} calibration images ({experiment.calibration_size} "
                  f"for ranges, observer {experiment.observer}, seed {experiment.seed})")
    return SweepInputs(names, omega, experiment.trace, experiment.loaded.tag, evaluate, evaluation,
                       provenance(model_tag=experiment.loaded.tag, metric=metric,
                                  sensitivity_cache_key=sensitivity.cache_key))


def sweep(model: str, space: str | os.PathLike, out: str | os.PathLike, objective: str | None = None,
          budgets: Sequence[str] | None = None, *, checkpoint: str | os.PathLike | None = None,
          pretrained: bool = False, data_dir: str | os.PathLike | None = None, metric: str = "pmq",
          bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES, calibration_images: int = 256,
          sensitivity_images: int = 64, limit: int | None = None, executor: str = "local",
          scheduler: str | None = None, workers: int | None = None, method: str = "estimate",
          progress: bool = True, input_size: tuple[int, ...] | None = None) -> SweepResult:
    """``pmq sweep``: validate the space and settings, prepare the model once, then :func:`run_sweep`."""
    loaded_space = load_space(space)  # bad input fails here, before torch loads anything
    _check_settings(loaded_space, objective, budgets, bit_pairs(bit_choices), executor, scheduler, method)
    from pmq.experiment import Experiment

    experiment = Experiment(model, checkpoint, pretrained, data_dir, calibration_images=calibration_images,
                            input_size=input_size)
    inputs = model_inputs(experiment, metric, bit_choices, sensitivity_images, limit)
    return run_sweep(loaded_space, inputs, out, objective, budgets, executor=executor, scheduler=scheduler,
                     workers=workers, method=method, progress=progress)
