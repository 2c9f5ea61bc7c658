"""`pmq plot`: every figure from a results folder alone, house style, and one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest
import torch
from matplotlib.image import imread
from timm.models.vision_transformer import VisionTransformer

import accelerators
import hwsim
import pmq.patchwise.runtime  # noqa: F401  (installs patch-wise allocations on the quantized model)
from pmq.allocation import BitAllocation, Bits
from pmq.cli import main
from pmq.errors import PMQError
from pmq.pareto import Choice, frontier
from pmq.patchwise.maps import token_bit_maps, token_bits_record
from pmq.plots import DOUBLE_COLUMN_IN, FIGURES, SINGLE_COLUMN_IN, plot_results
from pmq.quant import quantize_model
from pmq.report import write_report
from pmq.results import Measured, ResultsWriter, load_results
from pmq.runs import file_record
from pmq.trace import size_mb, trace_model

ARGS = dict(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0)
ACCELERATORS = ("bitfusion", "int8_systolic", "stripes")


def _random_allocation(names: list[str], seed: int) -> BitAllocation:
    rng = np.random.default_rng(seed)
    return BitAllocation({n: Bits(int(rng.choice([2, 4, 8])), int(rng.choice([4, 8]))) for n in names})


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    """A small but schema-correct folder, written by the demo's own writer from real simulations."""
    torch.manual_seed(0)
    model = VisionTransformer(**ARGS).eval()
    qv = quantize_model(model)
    trace = qv.trace
    names = qv.component_names()
    accels = {name: accelerators.load(name) for name in ACCELERATORS}
    root = tmp_path_factory.mktemp("results")
    writer = ResultsWriter(root, {
        "model": {"tag": "tiny-vit (random init)", "name": "tiny"},
        "data": {"source": "synthetic", "test_images": 100, "test_set_size": 100},
        "search": {"primary_accelerator": "bitfusion", "metrics": ["pmq", "hawq"], "bit_choices": [2, 4, 8],
                   "budgets": {"bops": ["0.3x:W8A8", "0.6x:W8A8"]}},
        "baseline": {"accelerator": "int8_systolic", "allocation": "W8A8"},
        "accelerators": {name: a.config for name, a in accels.items()},
        "provenance": {"pmq": "test", "torch": torch.__version__},
    })

    def add(label, method, allocation, top1, **search):
        sims = {name: hwsim.simulate(trace.workload(allocation), a) for name, a in accels.items()}
        measured = {name: Measured(top1, 100, size_mb(trace, allocation), trace.bops(allocation) / 1e9,
                                   s.latency_s, s.energy_pj, s.cycles, s.utilization, s.energy_breakdown,
                                   omega=0.1 if method != "uniform" else None)
                    for name, s in sims.items()}
        writer.add_allocation(label, method, allocation, measured, sims, **search)

    for setting, top1 in (("float", 0.9), ("W8A8", 0.89), ("W4A8", 0.85), ("W4A4", 0.7)):
        add(setting, "uniform", BitAllocation.uniform(setting, names), top1)
    rng = np.random.default_rng(0)
    macs = {name: cost.macs for name, cost in trace_model(model).components().items()}
    for metric in ("pmq", "hawq"):
        table = {n: [Choice(b, float(rng.random()) / b.w, {"bops": float(macs[n] * b.w * b.a)})
                     for b in (Bits(2, 4), Bits(4, 8), Bits(8, 8))] for n in names}
        writer.add_frontier(metric, "bops", frontier(table, ("bops",)), fixed_cost=0.0, unit_scale=1e-9,
                            unit="GBOPs", accelerator="bitfusion")
        for i, budget in enumerate(("0.3x:W8A8", "0.6x:W8A8")):
            label = f"{metric}-bops-{budget.split(':')[0]}"
            add(label, metric, _random_allocation(names, i + (metric == "hawq") * 10), 0.8 + 0.03 * i,
                metric=metric, objective="bops", budget=budget)
    writer.update(highlight=["pmq-bops-0.6x", "hawq-bops-0.6x"])
    shown = BitAllocation.uniform("W8A8", names)
    shown.patchwise = {"levels": [8, 4], "layers": {"blocks.1": {"rho": 0.5}}}
    maps = token_bit_maps(qv, torch.randn(2, 1, 8, 8), shown, operand="q", labels=torch.tensor([0, 2]))
    writer.add_token_bits(token_bits_record(maps, captions=["cat", "dog", "bird"], allocation="W8A8+patch-wise"))
    writer.update(complete=True)
    return root


def test_every_figure_in_every_format_from_the_files(results_dir, tmp_path):
    before = dict(mpl.rcParams)
    written = plot_results(results_dir, fmt=("pdf", "png", "svg"), out_dir=tmp_path)
    assert dict(mpl.rcParams) == before  # the style is a context, never global
    assert sorted(p.name for p in written) == sorted(f"{name}.{fmt}" for name in FIGURES for fmt in ("pdf", "png", "svg"))
    assert all(p.stat().st_size > 1000 for p in written)
    for path in tmp_path.glob("*.pdf"):
        data = path.read_bytes()
        assert b"/FontFile2" in data, path.name  # TrueType program embedded (pdf.fonttype 42)
        assert b"/Subtype /Type3" not in data, path.name
    for path in tmp_path.glob("*.png"):  # exactly one or two paper columns wide, at 300 dpi
        width_in = imread(path).shape[1] / 300
        assert min(abs(width_in - w) for w in (SINGLE_COLUMN_IN, DOUBLE_COLUMN_IN)) < 0.01, path.name


def test_report_names_setup_and_numbers(results_dir):
    report = write_report(results_dir).read_text()
    results = load_results(results_dir)
    assert "tiny-vit (random init)" in report and "synthetic" in report
    for label in results.labels:
        assert f"`{label}`" in report
    w8 = results.point("W8A8", "bitfusion")
    assert f"{w8['latency_s'] * 1e3:.4f}" in report
    assert "| bitfusion | bitfusion |" in report  # the accelerator config table


@pytest.mark.parametrize("missing", ["points.csv", "run.json", "allocations/W4A8.json", "ops/W4A4/stripes.csv",
                                     "frontiers/hawq-bops.csv", "patchwise/token_bits.json"])
def test_missing_file_is_one_line_naming_it(results_dir, tmp_path, capsys, missing):
    broken = tmp_path / "broken"
    shutil.copytree(results_dir, broken)
    (broken / missing).unlink()
    with pytest.raises(PMQError, match=re.escape(missing)):
        plot_results(broken)
    assert main(["plot", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and missing in err[0] and "Traceback" not in err[0]


def test_cli_plot_writes_figures(results_dir, capsys):
    assert main(["plot", str(results_dir), "--format", "png"]) == 0
    out = capsys.readouterr().out
    assert "pareto_accuracy.png" in out
    assert (results_dir / "figures" / "breakdown.png").is_file()


def test_bad_format_and_folder(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["plot", str(tmp_path), "--format", "jpeg"])
    assert exc.value.code == 2


def test_interrupted_run_is_still_readable(results_dir, tmp_path):
    """What a Ctrl-C before the HAWQ-v2 searches leaves: a manifest and points without them."""
    partial = tmp_path / "partial"
    shutil.copytree(results_dir, partial)
    run = json.loads((partial / "run.json").read_text())
    run["complete"] = False
    run["allocations"] = {k: v for k, v in run["allocations"].items() if v["method"] != "hawq"}
    run["searches"] = [s for s in run["searches"] if s["metric"] != "hawq"]
    run["highlight"] = ["pmq-bops-0.6x"]
    (partial / "run.json").write_text(json.dumps(run))
    points = (partial / "points.csv").read_text().splitlines(keepends=True)
    (partial / "points.csv").write_text("".join(line for line in points if ",hawq," not in line))
    assert {p.stem for p in plot_results(partial, fmt="png")} == set(FIGURES)
    report = write_report(partial).read_text()
    assert "Incomplete run" in report and "hawq-bops" not in report


@pytest.mark.parametrize("cut", ["mid-line", "whole-row"])
def test_truncated_points_csv_is_refused(results_dir, tmp_path, capsys, cut):
    broken = tmp_path / "broken"
    shutil.copytree(results_dir, broken)
    shutil.rmtree(broken / "figures", ignore_errors=True)
    run = json.loads((broken / "run.json").read_text())
    run["files"] = {"points.csv": file_record(broken / "points.csv")}  # what ResultsWriter.complete records
    (broken / "run.json").write_text(json.dumps(run))
    text = (broken / "points.csv").read_text()
    lines = text.splitlines(keepends=True)
    (broken / "points.csv").write_text(text[: len(text) - len(lines[-1]) // 2] if cut == "mid-line"
                                       else "".join(lines[:-1]))
    assert main(["plot", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "points.csv" in err[0] and ("truncated" in err[0] or "differs" in err[0])
    assert not (broken / "figures").exists()


def test_cut_csv_is_refused_without_a_manifest_record(results_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(results_dir, broken)
    text = (broken / "ops" / "W4A4" / "stripes.csv").read_text()
    (broken / "ops" / "W4A4" / "stripes.csv").write_text(text[: len(text) // 2])
    with pytest.raises(PMQError, match="truncated"):
        load_results(broken).ops("W4A4", "stripes")


def test_plot_names_the_folders_it_reads(tmp_path, capsys):
    assert main(["simulate", "--model", "demo", "--accelerator", "bitfusion", "--out", str(tmp_path / "sim")]) == 0
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "sim")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "simulate" in err[0] and "demo, search and sweep folders" in err[0]


def test_report_states_errors_ratios_and_equal_settings(results_dir):
    report = write_report(results_dir).read_text()
    results = load_results(results_dir)
    w4 = results.point("W4A4", "bitfusion")
    se = 100 * (w4["top1"] * (1 - w4["top1"]) / w4["images"]) ** 0.5
    assert f"{100 * w4['top1']:.2f} ± {se:.2f}" in report  # 70.00 ± 4.58 on 100 images
    base = results.point("W8A8", "int8_systolic")
    cell = f"{base['latency_s'] / w4['latency_s']:.2f}× / {w4['energy_pj'] / base['energy_pj']:.2f}×"
    assert cell in report and "saving" not in report.split("## Speedup")[1].split("##")[0]
    # an INT8 array runs every uniform setting at 8 bits: the report says so instead of leaving a puzzle
    assert "`W8A8`, `W4A8` and `W4A4` take the same cycles on `int8_systolic`" in report


def test_speedup_figure_leaves_out_the_flat_baseline_accelerator(results_dir):
    from pmq.plots.speedup import plot_speedup

    fig = plot_speedup(load_results(results_dir))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "int8_systolic" not in labels and {"bitfusion", "stripes"} <= set(labels)
    assert "lower is better" in fig.axes[len(fig.axes) // 2].get_ylabel()


def test_accuracy_legend_has_one_marker_per_method(results_dir):
    from pmq.plots.pareto import plot_pareto_accuracy

    fig = plot_pareto_accuracy(load_results(results_dir))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels.count("PMQ") == 1 and labels.count("HAWQ-v2") == 1 and "BOPs budget" in labels
    assert not any(", " in label for label in labels)
