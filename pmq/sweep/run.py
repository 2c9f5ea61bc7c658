"""Running a sweep: settings checked up front, designs priced by an executor, points stored and
evaluated, tables written; and the model side (torch, in the parent only)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from pmq.allocation import BitAllocation, Bits
from pmq.budget import Budget
from pmq.defaults import DEFAULT_BIT_CHOICES, DEFAULT_CALIBRATION_IMAGES, DEFAULT_SENSITIVITY_IMAGES
from pmq.errors import PMQError
from pmq.io import write_json, write_text
from pmq.records import SweepSummary
from pmq.runs import RunFolder
from pmq.search import bit_pairs
from pmq.sweep.executors import EXECUTORS, NO_DASK, run_dask, run_local
from pmq.sweep.pricing import PricingInputs, bit_pairs_of
from pmq.sweep.space import Space, check_sweep_objective, load_space
from pmq.sweep.store import Evaluator, Store, claim, digest, pareto_set, table_columns, to_csv
from pmq.trace.graph import ModelTrace

if TYPE_CHECKING:
    from pmq.experiment import Experiment

FORMAT = "pmq.sweep/1"
METHODS = ("estimate", "simulate")


@dataclass
class SweepInputs:
    """The model side of a sweep, prepared once in the parent.

    ``evaluate(allocation)`` returns at least ``top1`` (and optionally size_mb, gbops, images);
    ``evaluation`` describes how (data, image count) so cached results are only reused for the same
    setting; ``provenance`` is recorded in ``sweep.json``. All evaluations of a run happen inside one
    ``evaluating()`` context, in the order of the allocations' bits: a quantized model reuses the blocks
    consecutive allocations share there (:func:`pmq.quant.prefix.reusing_prefixes`).
    """

    component_names: list[str]
    omega: dict[str, dict[Bits, float]]
    trace: ModelTrace
    model_tag: str
    evaluate: Evaluator
    evaluation: str
    provenance: dict[str, Any] = field(default_factory=dict)
    evaluating: Callable[[], AbstractContextManager] = nullcontext


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs: the objective and budgets (None: the space file's), where designs are
    priced (``executor`` local with ``workers`` processes, or dask at ``scheduler``) and how
    (``method``: ``hwsim.estimate_workload`` or the event simulation)."""

    objective: str | None = None
    budgets: tuple[str, ...] | None = None
    executor: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    method: str = "estimate"
    progress: bool = True

    def checked(self, space: Space, pairs: Sequence[Bits]) -> SweepSettings:
        """These settings with the space file's defaults filled in, every one checked."""
        objective = check_sweep_objective(self.objective or space.objective)
        budgets = tuple(self.budgets or space.budgets or ())
        if not budgets:
            raise PMQError("no budgets: give some (e.g. 0.5x:W8A8 0.25x:W8A8) or add 'budgets' to the space "
                           "file", param="budgets")
        if self.executor not in EXECUTORS:
            raise PMQError(f"unknown executor {self.executor!r}: use one of {', '.join(EXECUTORS)}",
                           param="executor")
        if self.executor == "dask" and not self.scheduler:
            raise PMQError("the dask executor needs the scheduler's address (e.g. tcp://10.0.0.1:8786)",
                           param="scheduler")
        if self.executor == "dask" and importlib.util.find_spec("distributed") is None:
            raise PMQError(NO_DASK, param="executor")
        if self.method not in METHODS:
            raise PMQError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}", param="method")
        _check_budgets(budgets, pairs)
        return dataclasses.replace(self, objective=objective, budgets=budgets)


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


def run_sweep(space: Space | str | os.PathLike, inputs: SweepInputs, out: str | os.PathLike | RunFolder,
              objective: str | None = None, budgets: Sequence[str] | None = None, *,
              executor: str = "local", scheduler: str | None = None, workers: int | None = None,
              method: str = "estimate", progress: bool = True) -> SweepResult:
    """Price every point of ``space`` (designs × budgets), resuming from what ``out`` already holds.

    ``objective``/``budgets`` default to the space file's. ``executor="local"`` uses a process pool
    (``workers``, default all cores); ``"dask"`` submits to the dask.distributed scheduler at
    ``scheduler``. The table is the same whichever executor, and whether or not the run was
    interrupted and restarted. Local workers are spawned, so a script that calls this needs the
    ``if __name__ == "__main__":`` guard. ``out`` may be a :class:`pmq.runs.RunFolder` the caller
    has claimed already; otherwise it is claimed (checked, locked, swept) here.
    """
    if not isinstance(out, RunFolder):
        with RunFolder(Path(out), "sweep") as folder:
            return run_sweep(space, inputs, folder, objective, budgets, executor=executor, scheduler=scheduler,
                             workers=workers, method=method, progress=progress)
    folder = out
    start = time.perf_counter()
    space = space if isinstance(space, Space) else load_space(space)
    if any(d.patchwise is not None for d in space.designs):
        inputs.trace.check_patchwise()  # no class token: refused before any work
    pairs = bit_pairs_of(inputs.omega)
    settings = SweepSettings(objective, tuple(budgets) if budgets else None, executor, scheduler, workers, method,
                             progress).checked(space, pairs)
    objective, budgets = settings.objective, list(settings.budgets)
    out = folder.root
    pricing = PricingInputs(tuple(inputs.component_names), inputs.omega, inputs.trace, objective,
                            tuple(budgets), method)
    fingerprint = _fingerprint(space, pricing, inputs)
    summary = SweepSummary(
        fingerprint=fingerprint, space_file=str(space.source), model_tag=inputs.model_tag,
        objective=objective, budgets=budgets, method=method, bit_pairs=[str(b) for b in pairs],
        evaluation=inputs.evaluation, designs=len(space.designs), points=len(space.designs) * len(budgets),
        parameters=space.parameters, executor=executor)
    space_record = json.loads(json.dumps(space.data, default=str))
    claim(out, fingerprint)
    folder.begin_in_place()
    write_json(out / "sweep.json", _sweep_json(summary, space_record, inputs))

    store = Store(out, fingerprint, len(budgets), inputs.evaluate)
    pending = [d for d in space.designs if not store.has_design(d.id)]
    results = (run_local(pricing, pending, workers) if executor == "local"
               else run_dask(pricing, pending, scheduler))
    bar = tqdm(total=len(pending), unit="design", desc="sweep", disable=not progress or not pending)
    try:
        if pending:
            for rows in results:
                store.save_design(rows)
                bar.update(1)
    finally:
        bar.close()
        results.close()
    with inputs.evaluating():  # after pricing: the evaluations have every core
        store.evaluate_missing(progress)
    rows = store.table_rows(space)
    best = pareto_set(rows)
    table = write_text(out / "sweep.csv", to_csv(rows, table_columns(space)))
    pareto = write_text(out / "pareto.csv", to_csv(best, table_columns(space)))
    wall = time.perf_counter() - start
    summary = dataclasses.replace(summary, failed_points=sum(r["status"] != "ok" for r in rows),
                                  pareto_points=len(best), computed_designs=len(pending), wall_s=wall)
    write_json(out / "sweep.json", _sweep_json(summary, space_record, inputs))
    folder.finish(summary, inputs.provenance, names=("sweep.json", "sweep.csv", "pareto.csv"))
    return SweepResult(out, table, pareto, rows, len(pending), wall)


def _sweep_json(summary: SweepSummary, space: dict[str, Any], inputs: SweepInputs) -> dict[str, Any]:
    """``sweep.json``, the resume state's manifest (``FORMAT``): the summary plus the space as read
    and the provenance."""
    return {"format": FORMAT, **summary.to_dict(), "space": space, "provenance": inputs.provenance}


def _check_budgets(budgets: Sequence[str], pairs: Sequence[Bits]) -> None:
    """Fail before any work on a budget that no design could resolve (syntax, unknown setting)."""
    settings = {str(b) for b in pairs}

    def uniform(setting: str) -> float:
        if str(Bits.parse(setting)) not in settings:
            raise PMQError(f"budget setting {setting!r} is not among the bit pairs searched "
                           f"({', '.join(sorted(settings))}): use one of them, e.g. 0.5x:W8A8")
        return 1.0

    for budget in budgets:
        Budget.parse(budget).resolve(uniform)


def _fingerprint(space: Space, pricing: PricingInputs, inputs: SweepInputs) -> str:
    """Everything a point's numbers depend on; a folder holding another sweep is refused."""
    return digest({
        "format": FORMAT,
        "designs": [d.config if d.patchwise is None else [d.config, d.patchwise] for d in space.designs],
        "objective": pricing.objective, "budgets": pricing.budgets, "method": pricing.method,
        "omega": {name: {str(b): repr(v) for b, v in row.items()} for name, row in pricing.omega.items()},
        "workload": [[type(op).__name__, *map(repr, dataclasses.astuple(op)),
                      sorted(pricing.workload.graph.predecessors(op.name))] for op in pricing.workload.ops],
        "model_tag": inputs.model_tag, "evaluation": inputs.evaluation,
    })



def model_inputs(experiment: Experiment, metric: str = "pmq", bit_choices: Sequence[int] = DEFAULT_BIT_CHOICES,
                 sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES, limit: int | None = None) -> SweepInputs:
    """Ω (computed once, cached by content hash), the model's trace and a top-1 evaluator for a
    :class:`pmq.experiment.Experiment`."""
    from pmq.io import provenance
    from pmq.quant.prefix import reusing_prefixes
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
                                  sensitivity_cache_key=sensitivity.cache_key),
                       functools.partial(reusing_prefixes, experiment.qv))


@dataclass(frozen=True)
class SweepConfig:
    """``pmq sweep`` end to end: the model and how Ω and top-1 are measured, plus the run settings."""

    model: str = "demo"
    checkpoint: str | os.PathLike | None = None
    pretrained: bool = False
    data_dir: str | os.PathLike | None = None
    metric: str = "pmq"
    bit_choices: tuple[int, ...] = DEFAULT_BIT_CHOICES
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES
    limit: int | None = None  # test images per evaluation (None: all)
    settings: SweepSettings = field(default_factory=SweepSettings)
    input_size: tuple[int, ...] | None = None  # (C, H, W) for a model that states none


def sweep(space: str | os.PathLike, out: str | os.PathLike, config: SweepConfig) -> SweepResult:
    """``pmq sweep``: validate the space and settings, prepare the model once, then :func:`run_sweep`."""
    loaded_space = load_space(space)  # bad input fails here, before torch loads anything
    settings = config.settings
    settings.checked(loaded_space, bit_pairs(config.bit_choices))
    from pmq.experiment import Experiment

    with RunFolder(Path(out), "sweep") as folder:  # checked and locked before any work
        experiment = Experiment(config.model, config.checkpoint, config.pretrained, config.data_dir,
                                calibration_images=config.calibration_images, input_size=config.input_size)
        inputs = model_inputs(experiment, config.metric, config.bit_choices, config.sensitivity_images,
                              config.limit)
        return run_sweep(loaded_space, inputs, folder, settings.objective, settings.budgets,
                         executor=settings.executor, scheduler=settings.scheduler, workers=settings.workers,
                         method=settings.method, progress=settings.progress)
