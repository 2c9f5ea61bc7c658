"""The CLI contract: results on good input; one stderr line and exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pmq.cli import build_parser, main
from pmq.runs import read_run


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["evaluate", "--model", "demo", "--bits", "W9A8"], "W9A8"),
        (["evaluate", "--model", "demo", "--bits", "banana"], "banana"),
        (["evaluate", "--model", "demo", "--bits", "W1A8"], "2..8"),
        (["evaluate", "--model", "demo", "--data", "/nonexistent"], "/nonexistent"),
        (["evaluate", "--model", "not_a_timm_model"], "unknown model"),
        (["simulate", "--model", "demo", "--accelerator", "tpu9000"], "unknown accelerator"),
        (["simulate", "--model", "demo", "--accelerator", "bitfusion", "--bits", "W4A9"], "W4A9"),
        (["search", "--model", "demo", "--objective", "speed", "--budget", "1x:W8A8"], "unknown objective"),
        (["search", "--model", "demo", "--objective", "bops", "--budget", "1x:W8A8", "--metric", "vibes"], "vibes"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, needle)
    assert out == ""


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--model" in err


def test_malformed_allocation_file(capsys, tmp_path):
    bad = tmp_path / "alloc.json"
    bad.write_text("{not json")
    code, _, err = run_cli(capsys, "simulate", "--model", "demo", "--accelerator", "bitfusion", "--allocation", str(bad))
    assert_one_line_error(code, err, str(bad))


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("kind: bitfusion\n  bad: [indent\n", "YAML"),
        ("extends: nothing\n", "extends"),
    ],
)
def test_malformed_accelerator_yaml(capsys, tmp_path, yaml_text, needle):
    path = tmp_path / "acc.yaml"
    path.write_text(yaml_text)
    code, _, err = run_cli(capsys, "simulate", "--model", "demo", "--accelerator", str(path))
    assert_one_line_error(code, err, "acc.yaml")


def _preset_with(tmp_path, preset: str, edit) -> str:
    import yaml

    import accelerators

    data = yaml.safe_load((accelerators.PRESET_DIR / f"{preset}.yaml").read_text())
    edit(data)
    path = tmp_path / f"{preset}_edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_zero_bandwidth_names_the_key(capsys, tmp_path):
    path = _preset_with(tmp_path, "bitfusion", lambda d: d["dram"].update(bandwidth_bits_per_cycle=0))
    code, _, err = run_cli(capsys, "simulate", "--model", "demo", "--accelerator", path)
    assert_one_line_error(code, err, "dram.bandwidth_bits_per_cycle")


def test_buffer_too_small_for_a_tile(capsys, tmp_path):
    path = _preset_with(tmp_path, "int8_systolic", lambda d: d["buffers"].update(filter=16))
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "simulate", "--model", "demo", "--accelerator", path, "--out", str(out_dir))
    assert_one_line_error(code, err, "filter")
    assert not out_dir.exists()  # nothing half-written


def test_simulate_json_keys_and_files(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "simulate", "--model", "demo", "--accelerator", "bitfusion", "--bits", "W4A8",
                           "--out", str(tmp_path), "--json")
    assert code == 0
    summary = json.loads(out)
    assert set(summary) == {"cycles", "latency_s", "energy_pj", "bops", "utilization", "per_op"}
    assert summary["cycles"] > 0 and 0 < summary["utilization"] <= 1
    run = read_run(tmp_path)
    recorded = run.summary
    assert run.kind == "simulate" and set(run.files) == {"per_op.csv"}
    assert run.provenance["torch"] and run.provenance["timm"]
    assert run.provenance["model_tag"].startswith("pmq-demo-vit@")
    assert recorded.accelerator_config["name"] == "bitfusion" and recorded.cycles == summary["cycles"]
    assert {tuple(b.values()) for b in recorded.allocation["components"].values()} == {(4, 8)}
    assert recorded.per_op_file == "per_op.csv" and summary["per_op"] == str(tmp_path / "per_op.csv")
    rows = (tmp_path / "per_op.csv").read_text().splitlines()
    assert rows[0].startswith("name,") and len(rows) > 40


def test_simulate_topology_csv(capsys, tmp_path):
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer,M,N,K,\nfc1,197,1536,384,\nfc2,197,384,1536,\n")
    code, out, _ = run_cli(capsys, "simulate", "--workload", str(topo), "--accelerator", "int8_systolic",
                           "--bits", "W8A8", "--out", str(tmp_path / "o"), "--json")
    assert code == 0
    assert json.loads(out)["bops"] == 2 * 197 * 1536 * 384 * 64


def test_evaluate_json_keys(capsys):
    code, out, _ = run_cli(capsys, "evaluate", "--model", "demo", "--bits", "W8A8", "--limit", "64",
                           "--calibration-images", "16", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"top1", "size_mb", "gbops"}
    assert 0 <= result["top1"] <= 1 and result["size_mb"] > 0 and result["gbops"] > 0


@pytest.mark.slow  # a fresh interpreter imports torch and timm
def test_real_process_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "pmq.cli", "evaluate", "--model", "demo", "--bits", "W9A8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_observer_switches_to_static_per_tensor_ranges(capsys):
    """--observer X: activations per tensor, ranges fitted by X; the same number as the library's recipe."""
    from pmq.allocation import BitAllocation
    from pmq.data import fashion_mnist, stack_images
    from pmq.evaluate import evaluate_top1
    from pmq.models import load_model
    from pmq.quant import OBSERVERS, calibrate, quantize_model

    top1 = {}
    for observer in (None, "minmax"):
        argv = ["evaluate", "--model", "demo", "--bits", "W4A4", "--limit", "1000", "--calibration-images", "32",
                "--json", *(["--observer", observer] if observer else [])]
        assert main(argv) == 0
        top1[observer] = json.loads(capsys.readouterr().out)["top1"]
    model = load_model("demo").model
    qv = quantize_model(model, granularity="tensor")
    calibrate(qv, stack_images(fashion_mnist("train"), 32, seed=0)[0], "minmax")
    qv.apply(BitAllocation.uniform("W4A4", qv.component_names()))
    assert top1["minmax"] == evaluate_top1(qv, fashion_mnist("test"), 1000, progress=False)
    assert top1["minmax"] != top1[None]
    parser_choices = next(a for a in build_parser()._subparsers._group_actions[0].choices["evaluate"]._actions
                          if a.dest == "observer").choices
    assert set(parser_choices) == set(OBSERVERS)


def test_readme_synopsis_is_the_parser():
    """The README's command-line block is generated from the parser: regenerate it when flags change."""
    from pathlib import Path

    from pmq.cli import synopsis

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```\n", 2)[1]
    assert block.rstrip("\n") == synopsis(), (
        'README synopsis is stale: paste `python -c "from pmq.cli import synopsis; print(synopsis())"`')
    for flag in ("--limit", "--workers", "--method", "--metric", "--data", "--bit-choices", "--checkpoint",
                 "--patchwise-budget", "--patchwise-objective", "--observer"):
        assert flag in block


def test_library_errors_name_the_flag(capsys, tmp_path):
    """The library names its parameter (out_dir); the CLI names the flag the user typed."""
    (tmp_path / "f").write_text("x")
    code = main(["simulate", "--model", "demo", "--accelerator", "bitfusion", "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pmq simulate: error: --out: output folder")
