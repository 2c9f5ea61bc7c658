"""Typed summary records: JSON round trips, schema tags, and one-line refusals of what a reader can't read."""

from __future__ import annotations

import json

import pytest

from pmq.cli import main
from pmq.errors import PMQError
from pmq.records import (
    SUMMARIES,
    FrontierRecord,
    Measurement,
    PatchwiseSummary,
    SearchSummary,
    Simulated,
    SimulateSummary,
    SweepSummary,
    read_summary,
)
from pmq.runs import RUN_FILE, read_run

MEASURED = Measurement(top1=0.875, images=64, size_mb=0.25, gbops=1.5, latency_s=2e-4, energy_pj=3.5e6,
                       cycles=5000)


def search_summary(**changes) -> SearchSummary:
    fields = dict(
        model="demo", model_tag="pmq-demo-vit@abc", data="Fashion-MNIST", metric="pmq", objective="bops",
        second_objective=None, budget="0.4x:W8A8", budget_value=1.75, budget_unit="GBOPs", bit_choices=[4, 8],
        frontier_points=12, sensitivity_s=0.5, omega=0.125, measured=MEASURED, accelerator="bitfusion",
        accelerator_config={"name": "bitfusion", "array": {"rows": 16}}, allocation_file="allocation.json",
        frontier=FrontierRecord("frontier.csv", 12, ["bops"], 1e-9, None, {"bops": 0.0},
                                {"bops": [1.0, 2.0]}))
    return SearchSummary(**(fields | changes))


def test_a_search_summary_round_trips_through_json_with_its_nested_records():
    step = PatchwiseSummary("bops", "0.9x", 9.0, 10.0, 8.5, 0.01, "fisher", 16, 0.2, 11, 7,
                            {"blocks.1": "rho=0.5 levels=8/4"}, top1=0.86,
                            patchwise_simulated=Simulated(4000, 1.8e-4, 3.2e6, 1_400_000_000))
    summary = search_summary(before_patchwise=MEASURED, patchwise=step,
                             measured=Measurement(0.86, 64, 0.25, 1.4, 1.8e-4, 3.2e6, 4000))
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["schema"] == "pmq.search-summary/2" and "schema" not in data["measured"]
    step_data = data["patchwise"]
    assert step_data["patchwise_simulated"]["cycles"] == 4000 and step_data["base_top1"] is None
    back = SearchSummary.from_dict(data)
    assert back == summary
    assert isinstance(back.patchwise.patchwise_simulated, Simulated) and back.before_patchwise.top1 == 0.875


def test_every_run_kind_with_a_summary_has_a_versioned_schema():
    assert set(SUMMARIES) == {"search", "simulate", "sweep"}
    schemas = {record.SCHEMA for record in SUMMARIES.values()}
    assert len(schemas) == 3
    assert all(schema.startswith("pmq.") and schema.endswith("/2") for schema in schemas)
    assert read_summary("demo", {}) is None  # a demo's manifest is its own record (pmq.results)


@pytest.mark.parametrize(("schema", "shown"), [("pmq.search-summary/3", "pmq.search-summary/3"),
                                                (None, "untagged (an older pmq)")])
def test_an_unknown_schema_is_refused_with_one_line(schema, shown):
    data = search_summary().to_dict()
    data.pop("schema")
    if schema:
        data["schema"] = schema
    with pytest.raises(PMQError) as exc:
        SearchSummary.from_dict(data)
    assert str(exc.value) == (f"summary schema {shown} is not pmq.search-summary/2, the one this pmq reads: "
                              "re-run the command that wrote it with this pmq")


def test_a_missing_entry_is_named():
    data = search_summary().to_dict()
    del data["measured"]
    with pytest.raises(PMQError, match="pmq.search-summary/2 record lacks 'measured'"):
        SearchSummary.from_dict(data)
    sweep = SweepSummary("f" * 64, "s.yaml", "tag", "latency", ["0.5x:W8A8"], "estimate", ["W8A8"], "all",
                         2, 2, ["array.rows"], "local")
    data = sweep.to_dict()
    del data["failed_points"]  # optional: None until the sweep finishes
    assert SweepSummary.from_dict(data) == sweep and sweep.failed_points is None


def test_simulate_folder_records_its_summary_and_refuses_another_version(capsys, tmp_path):
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer,M,N,K,\nfc1,197,1536,384,\n")
    out = tmp_path / "sim"
    assert main(["simulate", "--workload", str(topo), "--accelerator", "int8_systolic", "--bits", "W8A8",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = read_run(out).summary
    assert isinstance(summary, SimulateSummary)
    assert (summary.cycles, summary.bops, summary.per_op_file) == (printed["cycles"], 197 * 1536 * 384 * 64,
                                                                   "per_op.csv")
    assert summary.allocation == {"uniform": "W8A8"} and summary.batch == 1 and summary.mapping == "search"
    manifest = json.loads((out / RUN_FILE).read_text())
    manifest["summary"]["schema"] = "pmq.simulate-summary/3"
    (out / RUN_FILE).write_text(json.dumps(manifest))
    with pytest.raises(PMQError) as exc:
        read_run(out)
    assert str(exc.value).startswith(f"{out / RUN_FILE}: summary schema pmq.simulate-summary/3 is not "
                                     "pmq.simulate-summary/2")
