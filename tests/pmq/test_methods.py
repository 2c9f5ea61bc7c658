"""Registries: one idiom (register, lookup), and a metric that carries its own label and plot style."""

from __future__ import annotations

import json

import pytest

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.methods import METHODS, OKABE_ITO, MethodStyle
from pmq.plots.breakdown import short_label
from pmq.plots.pareto import plot_pareto_accuracy
from pmq.registry import Registry
from pmq.results import RUN_FILE, Measured, ResultsWriter, load_results
from pmq.sensitivity import METRICS, MetricOutput, register_metric
from pmq.trace import size_mb, trace_model

TOY = MethodStyle("toy metric", "TOY", OKABE_ITO["sky"], "X", order=50, linestyle=":")


def test_registry_adds_once_and_names_the_choices():
    shapes: Registry[int] = Registry("shape", {"square": 4})
    assert shapes.register("triangle", 3) == 3

    @shapes.register("pentagon")
    def five() -> int:
        return 5

    assert list(shapes) == ["square", "triangle", "pentagon"] and shapes.lookup("pentagon") is five
    with pytest.raises(PMQError, match="shape 'square' is registered already"):
        shapes.register("square", 5)
    with pytest.raises(PMQError, match="unknown shape 'circle': use one of square, triangle, pentagon"):
        shapes.lookup("circle")


def test_every_metric_is_an_allocation_method_with_its_style():
    assert {"uniform", "patchwise", *METRICS} <= set(METHODS)
    assert METHODS.lookup("hawq") == METRICS["hawq"].style
    assert (METHODS.lookup("pmq").label, METHODS.lookup("pmq").color) == ("PMQ", OKABE_ITO["blue"])


@pytest.fixture
def toy_metric():
    """A metric registered the way a new one would be: no other module is edited."""
    @register_metric("toy", {}, version=1, summary="test metric", style=TOY)
    def toy(qv, images, labels, bits, counter, progress) -> MetricOutput:
        raise AssertionError("not run here")

    yield "toy"
    METRICS.pop("toy")
    METHODS.pop("toy")


def test_results_accept_every_registered_metric_and_draw_it_from_the_folder(tmp_path, tiny_vit, toy_metric):
    trace = trace_model(tiny_vit)
    names = trace.component_names
    accel = accelerators.load("bitfusion")
    writer = ResultsWriter(tmp_path, {"search": {"primary_accelerator": "bitfusion"},
                                      "baseline": {"accelerator": "bitfusion", "allocation": "W8A8"}})

    def add(label: str, method: str, setting: str, top1: float, **search) -> None:
        allocation = BitAllocation.uniform(setting, names)
        sim = hwsim.simulate(trace.workload(allocation), accel)
        measured = Measured(top1, 10, size_mb(trace, allocation), trace.bops(allocation) / 1e9,
                            sim.latency_s, sim.energy_pj, sim.cycles, sim.utilization, sim.energy_breakdown, 0.1)
        writer.add_allocation(label, method, allocation, {"bitfusion": measured}, {"bitfusion": sim}, **search)

    add("W8A8", "uniform", "W8A8", 0.9)
    add("measured-bops-0.5x", "measured", "W4A8", 0.8, metric="measured", objective="bops", budget="0.5x:W8A8")
    add("toy-bops-0.5x", "toy", "W4A4", 0.7, metric="toy", objective="bops", budget="0.5x:W8A8")
    with pytest.raises(PMQError, match="unknown allocation method 'nope'"):
        add("nope-1", "nope", "W8A8", 0.5)

    recorded = json.loads((tmp_path / RUN_FILE).read_text())["methods"]
    assert recorded["toy"] == TOY.to_dict() and recorded["measured"]["label"] == "measured loss"
    METHODS.pop("toy")  # the folder alone now knows how the toy metric looks
    results = load_results(tmp_path)
    assert results.style("toy") == TOY
    assert short_label(results, "toy-bops-0.5x") == "TOY 0.5×"
    fig = plot_pareto_accuracy(results)
    # one panel per cost axis, series in the registered order: uniform, measured, toy
    drawn = [(line.get_color(), line.get_marker()) for line in fig.axes[0].get_lines()
             if line.get_marker() not in ("None", "_")]  # not the error bars' lines and caps
    assert drawn == [("#000000", "s"), (OKABE_ITO["orange"], "P"), (TOY.color, TOY.marker)]
    # each method's marker once, then each budget objective's line once
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "uniform", "measured loss", "toy metric", "BOPs budget"]
    METHODS.register("toy", TOY)  # for the fixture's clean-up
