"""The results folder: what the writer puts in it is what load_results reads back, number for number."""

from __future__ import annotations

import json

import pytest

from hwsim.result import ENERGY_PARTS
from pmq.errors import PMQError
from pmq.records import AllocationEntry, DemoSearch
from pmq.results import (
    POINTS_FILE,
    RUN_FILE,
    allocation_label,
    budget_factor,
    load_results,
    referenced_files,
)


def test_points_read_back_exactly(tiny_results):
    root, allocations, top1 = tiny_results
    results = load_results(root)
    assert results.labels == list(allocations) and results.accelerators == ["bitfusion", "int8_systolic"]
    for label, allocation in allocations.items():
        assert results.allocation(label) == allocation  # the JSON loads back as the same allocation
        for accelerator in results.accelerators:
            point = results.point(label, accelerator)
            assert point["top1"] == top1[label] and point["images"] == 10
            ops = results.ops(label, accelerator)
            # the per-op table sums to the whole-model figures of the point (floats written with repr)
            assert sum(op["cycles"] for op in ops) >= point["cycles"] > 0
            parts = sum(point[f"energy_{part}_pj"] for part in ENERGY_PARTS)
            assert point["energy_pj"] == pytest.approx(parts, rel=1e-12)
    searched = results.point("pmq-bops-0.5x", "bitfusion")
    assert (searched["budget"], searched["budget_factor"], searched["budget_value"], searched["omega"]) == \
        ("0.5x:W8A8", 0.5, 1.5e-4, 0.25)
    assert results.point("W8A8", "bitfusion")["budget_factor"] is None
    assert results.primary_accelerator == "bitfusion" and results.baseline == ("int8_systolic", "W8A8")


def test_frontier_reads_back_in_report_units(tiny_results):
    results = load_results(tiny_results[0])
    omega, cost = results.frontier("pmq", "bops")
    # per-component costs (3, 6, 9) plus the fixed 10, in GBOPs; Ω falls as cost rises
    assert omega == [5.0, 3.0, 1.0] and cost == pytest.approx([13e-9, 16e-9, 19e-9], rel=1e-12)
    with pytest.raises(PMQError, match="has no hawq search on bops"):
        results.frontier("hawq", "bops")


def test_manifest_names_every_file_and_a_missing_one_is_one_line(tiny_results):
    root = tiny_results[0]
    run = json.loads((root / RUN_FILE).read_text())
    files = referenced_files(run)
    assert files[0] == POINTS_FILE and len(files) == 1 + 3 * (1 + 2) + 1  # points, 3 × (json + 2 ops), the frontier table
    assert all((root / f).is_file() for f in files) and not list(root.rglob("*.tmp"))
    (root / files[3]).unlink()
    with pytest.raises(PMQError, match=f"lacks {files[3]} \\(named in run.json\\)"):
        load_results(root)


def test_labels_and_budget_factors():
    assert allocation_label("pmq", "latency", "0.75x:W8A8") == "pmq-latency-0.75x"
    assert allocation_label("hawq", "bops", "2.5e9") == "hawq-bops-2.5e9"
    assert [budget_factor(b) for b in ("0.4x:W8A8", "1.5X:W4A4", "0.97x", "3e6")] == [0.4, 1.5, None, None]


def test_manifest_records_read_back_typed(tiny_results):
    results = load_results(tiny_results[0])
    entry = results.entries["pmq-bops-0.5x"]
    assert isinstance(entry, AllocationEntry)
    assert (entry.method, entry.metric, entry.objective, entry.budget, entry.base) == ("pmq", "pmq", "bops",
                                                                                        "0.5x:W8A8", "")
    assert entry.file == "allocations/pmq-bops-0.5x.json" and set(entry.ops) == {"bitfusion", "int8_systolic"}
    assert results.entries["W8A8"].budget == "" and results.entries["W8A8"].method == "uniform"
    [search] = results.searches
    assert isinstance(search, DemoSearch) and results.search("pmq", "bops") is search
    assert (search.fixed_cost, search.unit, search.unit_scale, search.points) == (10.0, "GBOPs", 1e-9, 3)


def test_a_damaged_manifest_record_is_one_line(tiny_results):
    root = tiny_results[0]
    run = json.loads((root / RUN_FILE).read_text())
    del run["allocations"]["W8A8"]["method"]
    (root / RUN_FILE).write_text(json.dumps(run))
    with pytest.raises(PMQError) as exc:
        load_results(root)
    assert str(exc.value) == (f"{root / RUN_FILE}: AllocationEntry record lacks 'method': "
                              "re-run the command that wrote it")
    assert exc.value.param == "results_dir"
