"""``pmq simulate --mapping``: the reference simulator's mapping against hwsim's mapper, same cost model."""

from __future__ import annotations

import json

from pmq.cli import main
from pmq.runs import read_run


def _simulate(capsys, tmp_path, accelerator: str, mapping: str, conv: bool = False):
    topo = tmp_path / "topo.csv"
    if conv:
        topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                        "Strides,\nconv, 16, 16, 3, 3, 64, 64, 1,\n")
    else:
        topo.write_text("Layer,M,N,K,\nfc1,197,1536,384,\nfc2,197,384,1536,\n")
    out = tmp_path / f"{accelerator}-{mapping}"
    code = main(["simulate", "--workload", str(topo), "--accelerator", accelerator, "--bits", "W2A2",
                 "--mapping", mapping, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return code, captured, out


def test_reference_mapping_costs_more_than_the_mapper_on_bitfusion(capsys, tmp_path):
    code, captured, out = _simulate(capsys, tmp_path, "bitfusion", "search")
    assert code == 0
    searched = json.loads(captured.out)
    code, captured, out = _simulate(capsys, tmp_path, "bitfusion", "reference")
    assert code == 0
    replayed = json.loads(captured.out)
    assert replayed["bops"] == searched["bops"]
    assert replayed["cycles"] > searched["cycles"]  # 32-bit psums loaded per tile at 2 bits: memory-bound
    assert read_run(out).summary.mapping == "reference"
    assert "bitfusion:" in (out / "per_op.csv").read_text()


def test_reference_mapping_of_a_scalesim_conv_topology(capsys, tmp_path):
    code, captured, _ = _simulate(capsys, tmp_path, "int8_systolic", "reference", conv=True)
    assert code == 0
    assert json.loads(captured.out)["bops"] == 14 * 14 * 3 * 3 * 64 * 64 * 2 * 2  # valid padding: 14x14 outputs


def test_reference_mapping_on_a_preset_without_one_is_one_line_exit_2(capsys, tmp_path):
    code, captured, out = _simulate(capsys, tmp_path, "stripes", "reference")
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "no reference mapping" in lines[0] and "Traceback" not in captured.err
    assert not out.exists()
