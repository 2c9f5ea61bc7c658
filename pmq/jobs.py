"""The commands' jobs end to end: evaluate and, into their run folders, search (with its optional
patch-wise step), simulate, and a sweep with its figure. Each takes typed settings and returns typed
records (:mod:`pmq.records`); the CLI only parses arguments into these settings and prints the records.

Settings are checked before anything heavy loads, and the run folder is claimed (checked, locked)
before any work (:class:`pmq.runs.RunFolder`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import accelerators
import hwsim
from pmq.allocation import BitAllocation, Bits
from pmq.defaults import DEFAULT_BIT_CHOICES, DEFAULT_CALIBRATION_IMAGES
from pmq.errors import PMQError
from pmq.records import SearchSummary, SimulateSummary
from pmq.runs import RunFolder, default_out, write_search, write_simulation
from pmq.search import check_objective
from pmq.sweep import SweepConfig, SweepResult, sweep

if TYPE_CHECKING:
    from pmq.experiment import EvalResult

PathLike = str | os.PathLike


def allocation_for(component_names: Sequence[str], bits: str | None = None,
                   allocation_file: PathLike | None = None) -> BitAllocation:
    """Uniform ``bits`` (e.g. ``W4A8``), an allocation file validated against the model, or float."""
    if allocation_file:
        return BitAllocation.load(allocation_file).validate(list(component_names))
    return BitAllocation.uniform(bits or "float", list(component_names))


@dataclass(frozen=True)
class ModelSpec:
    """Which model: ``name`` ('demo', a timm name, or package.module:function) and its weights."""

    name: str
    checkpoint: PathLike | None = None
    pretrained: bool = False
    input_size: tuple[int, ...] | None = None


@dataclass(frozen=True)
class EvaluateJob:
    """Top-1, size and BOPs of ``model`` at uniform ``bits``, an ``allocation_file`` or float.

    Activations are ranged per token (dynamic) unless an ``observer`` is named: an observer only
    means something for static ranges, so it switches activations to per-tensor ranges it fits on
    the calibration images."""

    model: ModelSpec
    bits: str | None = None
    allocation_file: PathLike | None = None
    data_dir: PathLike | None = None
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    observer: str | None = None
    calibration_seed: int = 0
    limit: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class Evaluation:
    """An evaluation's numbers, the model's tag and the setting evaluated (as given)."""

    result: EvalResult
    model_tag: str
    setting: str


def evaluate(job: EvaluateJob) -> Evaluation:
    """Run ``job``; bad bits fail before anything is loaded."""
    from pmq.experiment import Experiment

    if job.bits:
        Bits.parse(job.bits)
    experiment = Experiment(job.model.name, job.model.checkpoint, job.model.pretrained, job.data_dir,
                            calibration_images=job.calibration_images, observer=job.observer,
                            seed=job.calibration_seed, granularity="tensor" if job.observer else None,
                            input_size=job.model.input_size)
    allocation = allocation_for(experiment.component_names, job.bits, job.allocation_file)
    result = experiment.evaluate(allocation, job.limit, progress=job.progress)
    setting = job.bits or (str(job.allocation_file) if job.allocation_file else "float")
    return Evaluation(result, experiment.loaded.tag, setting)


@dataclass(frozen=True)
class SearchJob:
    """A PMQ search under ``budget`` on ``objective`` (see :func:`pmq.search.run_search`), then, with
    ``patchwise``, the patch-wise step on its allocation (:func:`pmq.patchwise.search.refine_search`)."""

    model: ModelSpec
    objective: str
    budget: str
    accelerator: str = "bitfusion"
    metric: str = "pmq"
    second_objective: str | None = None
    bit_choices: tuple[int, ...] = DEFAULT_BIT_CHOICES
    data_dir: PathLike | None = None
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    limit: int | None = None
    patchwise: bool = False
    patchwise_objective: str | None = None
    patchwise_budget: str | None = None
    progress: bool = True


def search(job: SearchJob, out: PathLike | None = None) -> tuple[SearchSummary, Path]:
    """Run ``job`` into ``out`` (default ``results/search-<model>-<accelerator>-<objective>-<budget>``):
    ``allocation.json``, ``frontier.csv`` and ``run.json``; returns the recorded summary and the folder."""
    from pmq.experiment import Experiment
    from pmq.patchwise.search import refine_search
    from pmq.search import run_search
    from pmq.sensitivity import get_metric

    check_objective(job.objective)
    if job.second_objective:
        check_objective(job.second_objective, param="second_objective")
    get_metric(job.metric)
    accel = accelerators.load(job.accelerator)
    out = Path(out) if out else default_out("search", job.model.name, accel.name, job.objective, job.budget)
    with RunFolder(out, "search") as folder:  # checked and locked before any work
        experiment = Experiment(job.model.name, job.model.checkpoint, job.model.pretrained, job.data_dir,
                                calibration_images=job.calibration_images, input_size=job.model.input_size)
        if job.patchwise:
            experiment.trace.check_patchwise()  # before any sensitivity pass
        result = run_search(experiment, accel, job.objective, job.budget, metric=job.metric,
                            bit_choices=job.bit_choices, second_objective=job.second_objective,
                            limit=job.limit, progress=job.progress)
        if job.patchwise:
            result = refine_search(experiment, result, accel, job.patchwise_objective, job.patchwise_budget,
                                   limit=job.limit, progress=job.progress)
        return write_search(folder, result), out


@dataclass(frozen=True)
class SimulateJob:
    """One simulation on ``accelerator``: a model (its trace at ``bits`` or ``allocation_file``) or a
    GEMM topology CSV (``workload``, uniform integer ``bits``); ``mapping``: hwsim's mapper
    (``search``) or the preset's reference simulator's (``reference``)."""

    accelerator: str
    model: ModelSpec | None = None
    workload: PathLike | None = None
    bits: str | None = None
    allocation_file: PathLike | None = None
    batch: int = 1
    mapping: str = "search"


@dataclass(frozen=True)
class Simulation:
    """A simulation's record, what was simulated (``label``), and its folder (None: not written)."""

    summary: SimulateSummary
    label: str
    folder: Path | None


def simulate(job: SimulateJob, out: PathLike | None = None) -> Simulation:
    """Run ``job``; with ``out``, write ``per_op.csv`` and ``run.json`` there (claimed before any work)."""
    with RunFolder(Path(out), "simulate") if out else nullcontext() as folder:
        accel = accelerators.load(job.accelerator)
        mapper = hwsim.mapper_for(job.mapping)
        if job.mapping == "reference":
            hwsim.reference.check_reference(accel)  # fail before loading a model
        workload, label, allocation, tag = _simulated_workload(job)
        result = hwsim.simulate(workload, accel, mapper=mapper)
        summary = SimulateSummary.of(result, accel, batch=job.batch, allocation=allocation,
                                     mapping=job.mapping)
        if folder is not None:
            summary = write_simulation(folder, result, summary, model_tag=tag)
        return Simulation(summary, label, folder.root if folder is not None else None)


def _simulated_workload(job: SimulateJob) -> tuple[hwsim.Workload, str, dict, str]:
    """(workload, label, allocation record, model tag) of what ``job`` simulates."""
    if job.workload is not None:
        if job.allocation_file:
            raise PMQError("an allocation file needs a model (a topology CSV has no components): "
                           "give uniform bits WxAy instead", param="allocation_file")
        bits = Bits.parse(job.bits or "W8A8")
        if bits.w is None:
            raise PMQError("a topology CSV needs integer bits WxAy (e.g. W8A8), not float", param="bits")
        workload = hwsim.Workload.from_topology_csv(job.workload, bits_a=bits.a, bits_b=bits.w)
        return workload, Path(job.workload).stem, {"uniform": str(bits)}, str(job.workload)
    if job.model is None:
        raise PMQError("nothing to simulate: name a model or a topology CSV", param="model")
    from pmq.models import load_model
    from pmq.trace import trace_model

    loaded = load_model(job.model.name, job.model.checkpoint, job.model.pretrained, job.model.input_size)
    trace = trace_model(loaded.model, loaded.input_size, batch=job.batch, name=loaded.name)
    allocation = allocation_for(trace.component_names, job.bits, job.allocation_file)
    return trace.workload(allocation), job.model.name, allocation.to_dict(), loaded.tag


@dataclass(frozen=True)
class SweepRun:
    """A finished sweep and its figure."""

    result: SweepResult
    figure: Path


def sweep_and_plot(space: PathLike, out: PathLike, config: SweepConfig) -> SweepRun:
    """:func:`pmq.sweep.sweep`, then its design-space figure (``figures/sweep.pdf``) from the folder."""
    from pmq.plots.sweep import save_sweep_figure

    result = sweep(space, out, config)
    return SweepRun(result, save_sweep_figure(result.out))
