"""SCALE-Sim 3.0.0's folds, ports and prefetch windows replayed on int8_systolic, checked on its own runs.

Reference: ``tests/hwsim/data/scalesim_user_reference.json`` (SCALE-Sim unmodified, its repository's
topologies, ws/os/is, 32x32 and 16x64 arrays, read/write port bandwidths 10/10, 10/50 and 50/50 words
per cycle, InterfaceBandwidth USER). Asserted on every layer, exactly: compute cycles (SCALE-Sim reports
the last cycle's 0-based index), ifmap and filter DRAM reads (its circular prefetch windows), ofmap DRAM
writes (its write buffer's drains), stall cycles and so total cycles (the issue's goal is ±10%).
"""

import copy
import functools
import json
from pathlib import Path

import numpy as np
import pytest

import accelerators
import hwsim

REFERENCE = json.loads((Path(__file__).parent / "data" / "scalesim_user_reference.json").read_text())
TOPOLOGIES = Path(__file__).parent / "data" / "scalesim_topologies"


def _accel(spec):
    config = copy.deepcopy(accelerators.load("int8_systolic").config)
    config["array"].update(rows=spec["rows"], cols=spec["cols"], dataflow=spec["dataflow"])
    config["dram"].update(bandwidth_bits_per_cycle=8 * spec["bandwidth"],
                          read_bandwidth_bits_per_cycle=8 * spec["read_bandwidth"])
    return accelerators.from_dict(config, "int8_systolic (SCALE-Sim run)")


RUNS = range(len(REFERENCE["runs"]))
RUN_IDS = [f"{Path(s['topology']).stem}-{s['rows']}x{s['cols']}-{s['dataflow']}-rd{s['read_bandwidth']}-wr{s['bandwidth']}"
           for s in (run["spec"] for run in REFERENCE["runs"])]


@functools.cache
def _replay(index: int) -> list:
    """(spec, op, layer, plan, cost) per layer of one reference run."""
    run = REFERENCE["runs"][index]
    spec = run["spec"]
    workload = hwsim.Workload.from_topology_csv(TOPOLOGIES / Path(spec["topology"]).name)
    accel = _accel(spec)
    rows = []
    for op, layer in zip(workload.ops, run["layers"], strict=True):
        plan = hwsim.ReferenceMapper().plan(op, accel)
        rows.append((spec, op, layer, plan, hwsim.cost_plan(plan, accel)))
    return rows


def test_reference_runs_cover_dataflows_arrays_bandwidths_and_conv():
    specs = [run["spec"] for run in REFERENCE["runs"]]
    assert {s["dataflow"] for s in specs} == {"ws", "os", "is"}
    assert {(s["rows"], s["cols"]) for s in specs} >= {(32, 32), (16, 64)}
    assert len({(s["bandwidth"], s["read_bandwidth"]) for s in specs}) >= 2
    assert any(not s["gemm"] for s in specs) and all(s["interface"] == "USER" for s in specs)


@pytest.mark.parametrize("index", RUNS, ids=RUN_IDS)
def test_replayed_compute_cycles_are_scalesims(index):
    for spec, op, layer, _, cost in _replay(index):
        assert cost.compute_cycles == layer["compute_cycles"] + 1, (spec, op.name)


@pytest.mark.parametrize("index", RUNS, ids=RUN_IDS)
def test_replayed_dram_words_and_stalls_are_scalesims(index):
    # the issue asks for +-10% on total cycles and DRAM words; the replay gives SCALE-Sim's own counts
    for spec, op, layer, plan, cost in _replay(index):
        bits = plan.dram_bits()
        assert bits["a"] // 8 == layer["dram_ifmap_reads"], (spec, op.name)
        assert bits["b"] // 8 == layer["dram_filter_reads"], (spec, op.name)
        assert cost.dram_write_bits // 8 == layer["dram_ofmap_writes"], (spec, op.name)
        assert cost.stall_cycles == layer["stall_cycles"], (spec, op.name)
        assert cost.cycles == layer["total_cycles"] + 1, (spec, op.name)  # its last cycle's 0-based index


@pytest.mark.parametrize("index", [i for i in RUNS if REFERENCE["runs"][i]["spec"]["dataflow"] == "ws"],
                         ids=[n for i, n in zip(RUNS, RUN_IDS, strict=True)
                              if REFERENCE["runs"][i]["spec"]["dataflow"] == "ws"])
def test_weight_stationary_writes_partial_sums_every_fold(index):
    for spec, op, _, plan, _ in _replay(index):
        words, rule = plan.dram_bits()["out"] // 8, op.m * op.n * -(-op.k // spec["rows"])
        # every fold writes its partial-sum block; SCALE-Sim counts short lines whole (a few words a drain)
        assert 0 <= words - rule <= 1e-3 * rule, (spec, op.name, words, rule)


def test_event_simulation_runs_the_replayed_stalls():
    index = next(i for i in RUNS if REFERENCE["runs"][i]["spec"]["dataflow"] == "os")
    spec, op, layer, _, cost = _replay(index)[0]
    workload = hwsim.Workload()
    workload.add(op)
    assert hwsim.simulate(workload, _accel(spec), mapper=hwsim.ReferenceMapper()).ops[0].cycles == cost.cycles
    assert cost.stall_cycles == layer["stall_cycles"]


def test_read_window_slides_round_the_operand_for_a_demand_behind_it():
    # 200-word buffer: 2-word sets, a 50-set window sliding by 50; a 300-word operand has 151 sets
    from hwsim.reference.scalesim_ports import ReadStream, simulate_ports

    sets = np.r_[np.arange(150), 0][:, None]  # one pass forward, then the first word again
    stream = ReadStream(300, 300, np.arange(151), sets)
    buffers = {"ifmap": 200, "ofmap": 200}
    result = simulate_ports({"ifmap": stream}, np.zeros(151, dtype=np.int64), buffers, 10, 10)
    # first window 100 words, then slides at sets 50 and 100, and one more to reach set 0 again
    assert result.dram_words == {"ifmap": 100 + 3 * 100, "ofmap": 0}
    # slides finish 11 cycles apart from cycle -1; a line that waits p cycles for one stalls 2p:
    # line 50 (t=50) finds slide 1 done at 10 (no wait), line 100 slide 2 at 21, line 150 slide 3 at 32
    assert result.stall_cycles == 0
    fast = ReadStream(300, 300, np.array([0, 1]), np.array([[0], [50]]))
    result = simulate_ports({"ifmap": fast}, np.zeros(2, dtype=np.int64), buffers, 10, 10)
    assert result.stall_cycles == 2 * (10 - (1 + 1))  # line 1 waits for the slide done at cycle 10


def test_replay_refuses_ports_narrower_than_a_word():
    config = copy.deepcopy(accelerators.load("int8_systolic").config)
    config["dram"]["read_bandwidth_bits_per_cycle"] = 4
    accel = accelerators.from_dict(config, "int8_systolic (4-bit read port)")
    with pytest.raises(hwsim.errors.HwsimError, match="dram.read_bandwidth_bits_per_cycle >= 8"):
        hwsim.ReferenceMapper().plan(hwsim.Gemm("g", m=4, k=4, n=4, bits_a=8, bits_b=8), accel)
