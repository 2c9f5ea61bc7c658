"""report.md from a results folder: the tables hold the measured numbers, in the stated units."""

from __future__ import annotations

import math

from pmq.report import render_report, table, write_report
from pmq.results import REPORT_FILE, load_results


def _row(report: str, first_cell: str) -> list[str]:
    """The cells of the first table row of ``report`` that starts with ``first_cell``."""
    line = next(line for line in report.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_markdown_tables_align_numbers_right():
    assert table(["name", "value"], [["a", 1.5], ["b", None], ["c", 1234567.0]]) == (
        "| name | value |\n| --- | ---: |\n| a | 1.5 |\n| b | – |\n| c | 1.235e+06 |")


def test_measured_results_are_the_points(tiny_results):
    root, allocations, top1 = tiny_results
    path = write_report(root)
    assert path == root / REPORT_FILE
    report = path.read_text()
    results = load_results(root)
    assert report.startswith("# PMQ results: `tiny-vit@0`\n") and report == render_report(results)
    for label in allocations:
        p = results.point(label, "bitfusion")
        method = "PMQ" if label.startswith("pmq") else "uniform"
        budget = "bops ≤ 0.5x:W8A8" if method == "PMQ" else "–"
        omega = "0.25" if method == "PMQ" else "–"
        assert _row(report, f"`{label}`") == [
            f"`{label}`", method, budget, f"{100 * top1[label]:.2f} ± {100 * math.sqrt(top1[label] * (1 - top1[label]) / p['images']):.2f}", f"{p['size_mb']:.3f}", f"{p['gbops']:.3f}",
            f"{p['latency_s'] * 1e3:.4f}", f"{p['energy_pj'] * 1e-6:.2f}", omega]
    # speedup / energy ratio against uniform W8A8 on int8_systolic, per accelerator
    base = results.point("W8A8", "int8_systolic")
    section = report[report.index("## Speedup / energy ratio"):]
    cells = _row(section, "`W4A4`")
    for accelerator, cell in zip(results.accelerators, cells[1:], strict=True):
        c = results.point("W4A4", accelerator)
        assert cell == f"{base['latency_s'] / c['latency_s']:.2f}× / {c['energy_pj'] / base['energy_pj']:.2f}×"
    assert _row(section, "`W8A8`")[2] == "1.00× / 1.00×"  # the baseline against itself
