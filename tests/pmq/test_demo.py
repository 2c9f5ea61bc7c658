"""`pmq demo` end to end on the real demo model (tiny settings): a complete, self-describing folder."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import accelerators
import pmq.demo
from pmq.demo import DemoConfig, run_demo
from pmq.patchwise.spec import PatchwiseSpec
from pmq.plots import FIGURES
from pmq.results import RUN_FILE, load_results, referenced_files

TINY = DemoConfig(  # HAWQ-v2 (the slow metric) runs in notebooks/03_paper_figures.ipynb
    uniform=("float", "W8A8", "W4A4"),
    metrics=("pmq",),
    budgets={"bops": ("0.5x:W8A8",), "latency": ("0.85x:W8A8",)},
    bit_choices=(4, 8),
    calibration_images=32,
    sensitivity_images=8,
    patchwise_levels=((8, 4),),
    patchwise_rhos=(1.0, 0.5, 0.25),
    token_map_images=2,
)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PMQ_CACHE_DIR", str(cache))
        out = tmp_path_factory.mktemp("demo")
        report = run_demo(out, limit=64, progress=False, config=TINY)
    assert report == out / "report.md"
    return out


@pytest.mark.slow  # shares the 16 s end-to-end demo run
def test_folder_is_complete(demo_dir):
    results = load_results(demo_dir)  # raises if any file the manifest names is missing
    run = results.run
    assert run["complete"] is True
    labels = ["float", "W8A8", "W4A4", "pmq-bops-0.5x", "pmq-latency-0.85x", "pmq-latency-0.85x-pw"]
    assert results.labels == labels
    assert set(results.accelerators) == set(accelerators.available())
    assert len(results.points) == len(labels) * len(accelerators.available())
    assert {p["images"] for p in results.points} == {64}
    assert all(0 <= p["top1"] <= 1 and p["latency_s"] > 0 and p["energy_pj"] > 0 for p in results.points)
    assert [(s["metric"], s["objective"]) for s in run["searches"]] == [("pmq", "bops"), ("pmq", "latency")]
    assert run["patchwise"] and run["highlight"] == ["pmq-latency-0.85x"]
    for name in FIGURES:
        for fmt in ("png", "pdf"):
            assert (demo_dir / "figures" / f"{name}.{fmt}").is_file(), f"{name}.{fmt}"
    assert not list(demo_dir.rglob("*.tmp"))
    # one run-folder format: the manifest is pmq.run/1 of kind demo and checks every data file it names
    assert (run["format"], run["kind"]) == ("pmq.run/1", "demo")
    assert set(run["files"]) == set(referenced_files(run)) and not list(demo_dir.glob("frontiers/*.json"))


@pytest.mark.slow  # shares the 16 s end-to-end demo run
def test_searched_allocations_meet_their_budgets(demo_dir):
    results = load_results(demo_dir)
    w8 = results.point("W8A8", "bitfusion")
    assert results.point("pmq-bops-0.5x", "bitfusion")["gbops"] <= 0.5 * w8["gbops"] * (1 + 1e-9)
    # the search prices latency with hwsim.estimate; the table holds the event simulation
    assert results.point("pmq-latency-0.85x", "bitfusion")["latency_s"] <= 0.85 * w8["latency_s"] * 1.02
    patchwise = results.point("pmq-latency-0.85x-pw", "bitfusion")
    assert patchwise["gbops"] <= 0.97 * results.point("pmq-latency-0.85x", "bitfusion")["gbops"] * (1 + 1e-9)


@pytest.mark.slow  # shares the 16 s end-to-end demo run
def test_report_states_model_data_versions_and_allocations(demo_dir):
    report = (demo_dir / "report.md").read_text()
    run = json.loads((demo_dir / RUN_FILE).read_text())
    assert run["model"]["tag"] in report
    assert "fashion-mnist" in report and "64 of 10000 test images" in report
    assert torch.__version__ in report and timm.__version__ in report
    assert "ranges per token (dynamic min-max per row)" in report and "minmax ranges on the int-b grid" in report
    for name in accelerators.available():
        assert f"| {name} |" in report
    for label in run["allocations"]:
        assert f"`{label}`" in report
    assert "### `pmq-latency-0.85x`" in report  # the chosen allocation, per layer
    # the patch-wise settings, one row per demoted layer, as the allocation file holds them
    patchwise = load_results(demo_dir).allocation("pmq-latency-0.85x-pw").patchwise
    spec = PatchwiseSpec.from_dict(patchwise, list(patchwise["layers"]))
    assert spec.layers  # 0.97x of the base cost needs at least one layer of token groups
    for layer, setting in spec.layers.items():
        row = f"| `{layer}` | {', '.join(f'{r:g}' for r in setting.rho)} | {'/'.join(map(str, setting.levels))} |"
        assert row in report, row


def test_ctrl_c_leaves_finished_files(tmp_path, monkeypatch):
    """An interrupt during the first search keeps the uniform results, readable and listed."""
    monkeypatch.setenv("PMQ_CACHE_DIR", str(tmp_path / "cache"))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pmq.demo, "ModelSearch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path / "out", limit=32, progress=False, config=TINY)
    results = load_results(tmp_path / "out")
    assert results.run["complete"] is False
    assert results.labels == ["float", "W8A8", "W4A4"]
    assert all((tmp_path / "out" / f).is_file() for f in referenced_files(results.run))
    assert not list((tmp_path / "out").rglob("*.tmp"))
