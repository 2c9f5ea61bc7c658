"""``pmq demo``: the main job, end to end, on the bundled Fashion-MNIST ViT.

Uniform settings and PMQ / HAWQ-v2 searches at several budgets (on BOPs and on simulated latency)
are evaluated on the test set and simulated on every accelerator preset; the results folder
(``pmq.results``) is written file by file, then the figures and ``report.md`` are made from those
files alone, so ``pmq plot`` redraws them without re-running anything.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.defaults import (
    DEFAULT_BIT_CHOICES,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_SENSITIVITY_IMAGES,
    FLOAT_BITS_ON_HARDWARE,
)
from pmq.errors import PMQError
from pmq.experiment import EvalResult, Experiment
from pmq.io import provenance
from pmq.patchwise.search import DEFAULT_LEVEL_SETS, DEFAULT_RHOS
from pmq.quant import DEFAULT_OBSERVER
from pmq.results import REPORT_FILE, Measured, ResultsWriter, allocation_label
from pmq.runs import RunFolder
from pmq.search import OBJECTIVES, ModelSearch

DEFAULT_OUT = Path("results") / "demo"


def _default_budgets() -> dict[str, tuple[str, ...]]:
    # BOPs span 1/16..1 × W8A8 over bits 2..8; bitfusion latency only ~0.75..1 × W8A8 on the demo
    # model (vector ops do not shrink with bits, and BitFusion writes 32-bit outputs back to DRAM),
    # so its budgets sit inside that range.
    return {"bops": ("0.25x:W8A8", "0.4x:W8A8", "0.6x:W8A8"),
            "latency": ("0.8x:W8A8", "0.85x:W8A8", "0.9x:W8A8")}


@dataclass
class DemoConfig:
    """What the demo runs. The defaults take a few minutes on two CPU cores."""

    model: str = "demo"
    uniform: tuple[str, ...] = ("float", "W8A8", "W6A6", "W4A8", "W4A4")
    metrics: tuple[str, ...] = ("pmq", "hawq")
    budgets: dict[str, tuple[str, ...]] = field(default_factory=_default_budgets)
    accelerators: tuple[str, ...] | None = None  # None: every preset
    search_accelerator: str = "bitfusion"  # prices the latency/energy objectives
    baseline_accelerator: str = "int8_systolic"  # speedups and savings are relative to ...
    baseline_setting: str = "W8A8"  # ... this uniform setting on it
    bit_choices: tuple[int, ...] = DEFAULT_BIT_CHOICES
    test_images: int | None = 2000  # seeded subset of the 10k test set (±0.7 points top-1 std. error); None = all
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES
    observer: str = DEFAULT_OBSERVER  # ranges per-tensor activations only; the default is per token
    seed: int = 0
    highlight_objective: str = "latency"  # the middle budget of this objective is shown in detail
    patchwise_objective: str | None = "bops"  # patch-wise reallocation of the highlighted PMQ allocation ...
    patchwise_budget: str = "0.97x"  # ... under this share of its own cost (None objective: skip); token
    # groups only touch the attention operands, so ~0.9x is the floor on the demo model
    patchwise_levels: tuple[tuple[int, ...], ...] = DEFAULT_LEVEL_SETS  # candidate token bit levels ...
    patchwise_rhos: tuple[float, ...] = DEFAULT_RHOS  # ... and shares of patches kept at the high level
    token_map_images: int = 4  # test images (distinct classes) shown with their per-patch bits


def _measured(evaluated: EvalResult, sim: hwsim.SimResult, omega: float | None = None) -> Measured:
    return Measured(top1=evaluated.top1, images=evaluated.images, size_mb=evaluated.size_mb,
                    gbops=evaluated.gbops, latency_s=sim.latency_s, energy_pj=sim.energy_pj, cycles=sim.cycles,
                    utilization=sim.utilization, energy_breakdown_pj=sim.energy_breakdown, omega=omega)


def _model_info(experiment: Experiment) -> dict[str, Any]:
    from pmq.models import DEMO_CHECKPOINT

    model = experiment.loaded.model
    info: dict[str, Any] = {
        "name": experiment.loaded.name, "tag": experiment.loaded.tag, "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()), "components": len(experiment.component_names),
    }
    embed = getattr(model, "patch_embed", None)
    if embed is not None:
        info["architecture"] = {
            "img_size": list(embed.img_size), "patch_size": list(embed.patch_size),
            "in_chans": embed.proj.in_channels, "embed_dim": getattr(model, "embed_dim", None),
            "depth": len(getattr(model, "blocks", [])), "num_heads": model.blocks[0].attn.num_heads,
            "num_classes": getattr(model, "num_classes", None), "tokens": embed.num_patches + 1,
        }
    training = DEMO_CHECKPOINT.with_suffix(".json")
    if experiment.loaded.name == "demo" and training.is_file():
        info["training"] = json.loads(training.read_text())
    return info


def _quantizer_recipe(experiment: Experiment, observer: str) -> dict[str, Any]:
    """How the wrapped model quantizes: activation ranges (and their observer, if static), weight ranges."""
    components = experiment.qv.components().values()
    granularity = sorted({q.granularity for q in experiment.qv.activation_quantizers()})
    return {"activation_ranges": "/".join(f"per {g}" for g in granularity),
            "observer": observer if "tensor" in granularity else None,
            "weight_ranges": "/".join(sorted({c.quantizer_w.clipping for c in components if c.kind != "matmul"})),
            "weights": "symmetric per output channel", "activations": "asymmetric"}


def _versions() -> dict[str, Any]:
    import matplotlib
    import networkx
    import simpy

    return provenance(matplotlib=matplotlib.__version__, simpy=simpy.__version__,
                      networkx=networkx.__version__, platform=platform.platform())


def _distinct_class_images(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first test image of each of the first ``n`` classes met (deterministic)."""
    images, labels, seen = [], [], set()
    for index in range(len(dataset)):
        image, label = dataset[index]
        if int(label) not in seen:
            seen.add(int(label))
            images.append(image)
            labels.append(int(label))
            if len(images) == n:
                break
    return torch.stack(images), torch.tensor(labels)


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


class _DemoRun:
    """One run: the loaded experiment, the accelerators, the writer; one method per phase."""

    def __init__(self, out_dir: Path, cfg: DemoConfig, test_images: int | None, limit: int | None,
                 bar: tqdm) -> None:
        self.cfg, self.test_images, self.bar = cfg, test_images, bar
        names = list(cfg.accelerators or accelerators.available())
        names += [n for n in (cfg.search_accelerator, cfg.baseline_accelerator) if n not in names]
        self.accels = {name: accelerators.load(name) for name in names}
        self.step("load model + data, calibrate")
        self.experiment = Experiment(cfg.model, calibration_images=cfg.calibration_images, observer=cfg.observer,
                                     seed=cfg.seed)
        self.experiment.calibrate()
        self.writer = ResultsWriter(out_dir, self._run_info(limit))
        self.highlight: list[str] = []
        self.chosen: dict[str, BitAllocation] = {}
        self.search: ModelSearch | None = None  # built at the first search
        self.bar.update()

    def step(self, what: str) -> None:
        self.bar.set_postfix_str(what, refresh=True)

    def _run_info(self, limit: int | None) -> dict[str, Any]:
        cfg, experiment = self.cfg, self.experiment
        test_set_size = len(experiment.test_set)
        return {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "reproduce": "pmq demo --out DIR" + (f" --limit {limit}" if limit is not None else ""),
            "config": {**asdict(cfg), "test_images": self.test_images},
            "provenance": _versions(),
            "model": _model_info(experiment),
            "data": {
                "source": experiment.source.describe(), "test_set_size": test_set_size,
                "test_images": min(self.test_images or test_set_size, test_set_size), "test_subset_seed": 0,
                "calibration_images": cfg.calibration_images, "calibration_split": "train",
                "calibration_seed": cfg.seed, "observer": cfg.observer, "sensitivity_images": cfg.sensitivity_images,
            },
            "quantizer": _quantizer_recipe(experiment, cfg.observer),
            "search": {"primary_accelerator": cfg.search_accelerator, "bit_choices": list(cfg.bit_choices),
                       "budgets": cfg.budgets, "metrics": list(cfg.metrics), "float_on_hardware_bits": FLOAT_BITS_ON_HARDWARE},
            "baseline": {"accelerator": cfg.baseline_accelerator, "allocation": cfg.baseline_setting},
            "accelerators": {name: accel.config for name, accel in self.accels.items()},
            "accelerator_sources": {name: accel.sources for name, accel in self.accels.items()},
        }

    def simulate_all(self, allocation: BitAllocation) -> dict[str, hwsim.SimResult]:
        workload = self.experiment.trace.workload(allocation)
        return {name: hwsim.simulate(workload, accel) for name, accel in self.accels.items()}

    def uniform(self) -> None:
        for setting in self.cfg.uniform:
            self.step(f"evaluate {setting}")
            allocation = BitAllocation.uniform(setting, self.experiment.component_names)
            allocation.metadata.update({"method": "uniform", "model": self.experiment.loaded.tag})
            evaluated = self.experiment.evaluate(allocation, self.test_images, progress=False)
            sims = self.simulate_all(allocation)
            self.writer.add_allocation(setting, "uniform", allocation,
                                       {n: _measured(evaluated, s) for n, s in sims.items()}, sims)
            self.bar.update()

    def searches(self, metric: str) -> None:
        """Every budget of every objective with one sensitivity metric: workload and cost table are
        built once per run, Ω once per metric, the frontier once per (metric, objective)."""
        cfg, accel = self.cfg, self.accels[self.cfg.search_accelerator]
        if self.search is None:
            self.search = ModelSearch(self.experiment, accel, list(cfg.budgets), cfg.bit_choices,
                                      cfg.sensitivity_images, progress=False)
        for objective, budgets in cfg.budgets.items():
            for i, budget in enumerate(budgets):
                self.step(f"{metric} search, {objective} <= {budget}")
                result = self.search.run(metric, (objective,), budget, limit=self.test_images)
                s, m = result.summary, result.summary.measured
                if i == 0:  # one frontier per (metric, objective): the budgets only pick points on it
                    self.writer.add_frontier(
                        metric, objective, result.frontier, result.costs.fixed[objective],
                        result.costs.in_units(objective, 1.0), OBJECTIVES[objective], accel.name)
                label = allocation_label(metric, objective, budget)
                evaluated = EvalResult(m.top1, m.size_mb, m.gbops, m.images)
                sims = self.simulate_all(result.allocation)
                self.writer.add_allocation(label, metric, result.allocation,
                                           {n: _measured(evaluated, sim, s.omega) for n, sim in sims.items()},
                                           sims, metric=metric, objective=objective, budget=budget,
                                           budget_value=s.budget_value, budget_unit=s.budget_unit)
                self.chosen[label] = result.allocation
                if objective == cfg.highlight_objective and i == len(budgets) // 2:
                    self.highlight.append(label)
                    self.writer.update(highlight=self.highlight)
                self.bar.update()

    def patchwise(self) -> None:
        """PMQ's third step on the highlighted PMQ allocation: per-layer token-group bits under a
        budget, then its per-patch bit maps over a few test images."""
        from pmq.data import FASHION_MNIST_CLASSES
        from pmq.patchwise.maps import token_bit_maps, token_bits_record
        from pmq.patchwise.search import patchwise_choices, run_patchwise

        cfg, experiment = self.cfg, self.experiment
        base_label = next((label for label in self.highlight if label.startswith("pmq-")),
                          (self.highlight or list(self.chosen))[0])
        self.step(f"patch-wise {base_label}, {cfg.patchwise_objective} <= {cfg.patchwise_budget}")
        search = run_patchwise(experiment, self.chosen[base_label], self.accels[cfg.search_accelerator],
                               cfg.patchwise_objective, cfg.patchwise_budget,
                               choices=patchwise_choices(cfg.patchwise_levels, cfg.patchwise_rhos),
                               omega_images=cfg.sensitivity_images, evaluate=False, progress=False)
        label, allocation = f"{base_label}-pw", search.allocation
        allocation.metadata.update({"method": "patchwise", "base_allocation": base_label})
        sims = self.simulate_all(allocation)
        evaluated = experiment.evaluate(allocation, self.test_images, progress=False)
        omega = search.summary.omega
        self.writer.add_allocation(label, "patchwise", allocation,
                                   {n: _measured(evaluated, s, omega) for n, s in sims.items()},
                                   sims, metric="pmq", objective=cfg.patchwise_objective,
                                   budget=cfg.patchwise_budget, base=base_label)
        images, labels = _distinct_class_images(experiment.test_set, cfg.token_map_images)
        # show the operand whose token bits vary most: an operand already at the low level stays flat
        maps = max((token_bit_maps(experiment.qv, images, allocation, operand=operand, labels=labels)
                    for operand in allocation.patchwise.get("apply_to", ["q"])),
                   key=lambda m: sum(len(np.unique(m.bits[:, layer])) for layer in range(len(m.layers))))
        captions = list(FASHION_MNIST_CLASSES) if experiment.loaded.name == "demo" else None
        self.writer.add_token_bits(token_bits_record(maps, captions, allocation=label))
        self.bar.update()


def run_demo(out_dir: str | Path = DEFAULT_OUT, limit: int | None = None, progress: bool = True,
             config: DemoConfig | None = None) -> Path:
    """Run the demo into ``out_dir`` and return the path of its ``report.md``.

    ``limit`` caps the test images per evaluation (default ``config.test_images``). Every result
    file is complete once written; Ctrl-C leaves the finished ones (and a ``run.json`` listing
    them) in place. Wall time per phase is recorded in ``run.json`` (``timings_s``).
    """
    cfg = config or DemoConfig()
    unknown = [objective for objective in cfg.budgets if objective not in OBJECTIVES]
    if unknown:
        raise PMQError(f"unknown objective {unknown[0]!r} in the demo budgets: use one of {', '.join(OBJECTIVES)}")
    with RunFolder(Path(out_dir), "demo") as folder:  # checked and locked before any work
        folder.begin_in_place()
        return _run_demo(folder.root, cfg, limit, progress)


def _run_demo(out_dir: Path, cfg: DemoConfig, limit: int | None, progress: bool) -> Path:
    from pmq.plots import plot_results
    from pmq.report import write_report

    steps = 1 + len(cfg.uniform) + len(cfg.metrics) * sum(map(len, cfg.budgets.values())) \
        + bool(cfg.patchwise_objective) + 2
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with tqdm(total=steps, desc="pmq demo", unit="step", disable=not progress) as bar:
        with _timed(timings, "load_and_calibrate"):
            run = _DemoRun(Path(out_dir), cfg, limit if limit is not None else cfg.test_images, limit, bar)
        with _timed(timings, "uniform"):
            run.uniform()
        for metric in cfg.metrics:
            with _timed(timings, f"{metric}_searches"):
                run.searches(metric)
        if cfg.patchwise_objective:
            with _timed(timings, "patchwise"):
                run.patchwise()
        run.step("figures")
        with _timed(timings, "figures"):
            figures = plot_results(run.writer.root, fmt=("pdf", "png"))
        bar.update()
        run.step("report")
        timings["total"] = time.perf_counter() - started
        run.writer.update(figures=[str(p.relative_to(run.writer.root)) for p in figures], timings_s=timings,
                          runtime_s=timings["total"], report=REPORT_FILE, complete=True)
        report = write_report(run.writer.root)
        run.writer.complete()
        bar.update()
    return report
