import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accelerators
import hwsim
from tests.hwsim.conftest import deit_small_workload

BITS = st.sampled_from([2, 3, 4, 6, 8, 16])
SHAPES = st.tuples(st.integers(1, 300), st.integers(1, 700), st.integers(1, 700))


def one_op_workload(op):
    w = hwsim.Workload()
    w.add(op)
    return w


@pytest.mark.slow  # full DeiT-S event simulation on every preset, four settings
@pytest.mark.parametrize("bits", [(8, 8), (4, 8), (4, 4), (2, 2)])
def test_estimate_equals_simulation_on_every_deit_s_op(presets, bits):
    """Both run the mapper's plan lock-step through the same pipeline, so every figure agrees exactly
    (it was within 5% while the simulation's free-running pipeline differed from the closed form)."""
    workload = deit_small_workload(*bits)
    for accel in presets.values():
        simulated = hwsim.simulate(workload, accel)
        for row in simulated.ops:
            assert hwsim.estimate(workload.graph.nodes[row.name]["op"], accel) == row, (accel.name, row.name)


@settings(max_examples=30, deadline=None)
@given(shape=SHAPES, bits_a=BITS, bits_b=BITS, count=st.integers(1, 3))
def test_cycles_never_beat_the_peak_and_estimate_equals_simulation(presets, shape, bits_a, bits_b, count):
    m, k, n = shape
    op = hwsim.Gemm("g", m, k, n, bits_a, bits_b, count=count)
    for accel in presets.values():
        row = hwsim.simulate(one_op_workload(op), accel).ops[0]
        assert row.cycles >= op.macs / accel.array.peak_macs_per_cycle(op)
        assert row.cycles == row.compute_cycles + row.stall_cycles and row.stall_cycles >= 0
        assert 0 < row.utilization <= 1
        assert row.energy_pj >= (row.dram_read_bits + row.dram_write_bits) * accel.dram.energy_pj_per_bit
        assert hwsim.estimate(op, accel) == row


def test_totals_are_the_sums_of_per_op_parts(presets):
    result = hwsim.simulate(deit_small_workload(4, 8, depth=2), presets["bitfusion"])
    assert result.cycles == sum(op.cycles for op in result.ops)
    assert result.bops == sum(op.bops for op in result.ops)
    assert result.energy_pj == pytest.approx(sum(op.energy_pj for op in result.ops))
    for part, total in result.energy_breakdown.items():
        assert total == pytest.approx(sum(op.energy_breakdown[part] for op in result.ops))
    assert result.latency_s == pytest.approx(result.cycles / 500e6)
    summary = result.summary()
    assert {"cycles", "latency_s", "energy_pj", "bops", "utilization"} <= set(summary)
    assert 0 < summary["utilization"] <= 1
    assert result.energy_breakdown["vector"] > 0 and result.energy_breakdown["static"] > 0


def test_lower_bits_pack_more_per_buffer_and_cut_dram_traffic(presets):
    fc1_8 = hwsim.Gemm("fc1", 197, 384, 1536, 8, 8)
    fc1_4 = hwsim.Gemm("fc1", 197, 384, 1536, 4, 4)
    bitfusion = presets["bitfusion"]
    e8, e4 = hwsim.estimate(fc1_8, bitfusion), hwsim.estimate(fc1_4, bitfusion)
    assert e4.dram_read_bits < e8.dram_read_bits and e4.energy_dram_pj < e8.energy_dram_pj
    systolic = presets["int8_systolic"]
    assert hwsim.estimate(fc1_4, systolic).dram_read_bits == hwsim.estimate(fc1_8, systolic).dram_read_bits


def test_tile_that_cannot_fit_raises_tile_error_naming_op_and_buffer(presets):
    with pytest.raises(hwsim.TileError) as err:
        hwsim.make_plan(hwsim.Gemm("blocks.0.mlp.fc1", 197, 384, 1536, 8, 8), presets["bitfusion"], 16, 384, 1536, "nmk")
    message = str(err.value)
    assert "op 'blocks.0.mlp.fc1'" in message and "buffer 'filter' has 65536 bytes" in message
    assert "enlarge buffers.filter" in message and "\n" not in message
    assert isinstance(err.value, hwsim.HwsimError)


def test_buffer_too_small_for_one_aligned_tile_is_a_tile_error_naming_op_and_buffer():
    config = dict(accelerators.load("bitfusion").config)
    config["buffers"] = dict(config["buffers"], filter=64)
    tiny = accelerators.from_dict(config, "tiny.yaml")
    with pytest.raises(hwsim.TileError) as err:
        hwsim.simulate(one_op_workload(hwsim.Gemm("blocks.0.mlp.fc1", 197, 384, 1536, 8, 8)), tiny)
    message = str(err.value)
    assert "op 'blocks.0.mlp.fc1'" in message and "buffer 'filter' has 64 bytes" in message
    assert "enlarge buffers.filter" in message and "\n" not in message
    row = hwsim.estimate(hwsim.Gemm("small", 4, 4, 4, 8, 8), tiny)  # its whole 4x4 B is one 16-byte tile
    assert row.cycles == row.compute_cycles + row.stall_cycles > 0


def test_vector_ops_run_on_the_vector_unit(presets):
    accel = presets["int8_systolic"]
    op = hwsim.VectorOp("sm", "softmax", 6 * 197 * 197, 8)
    row = hwsim.simulate(one_op_workload(op), accel).ops[0]
    per_element = accel.vector.cycles_per_element["softmax"]
    assert row.compute_cycles >= op.elements * per_element / accel.vector.lanes
    assert row.energy_vector_pj == op.elements * accel.vector.energy_pj_per_element["softmax"]
    assert row.macs == 0 and row.dram_read_bits == op.elements * 8


def test_missing_vector_kind_is_a_one_line_error(presets):
    hwsim.register_vector_kind("rmsnorm_test")
    with pytest.raises(hwsim.HwsimError, match="no vector.cycles_per_element.rmsnorm_test; add it"):
        hwsim.estimate(hwsim.VectorOp("n", "rmsnorm_test", 10), presets["loom"])


def test_csv_and_json_outputs_are_well_formed(presets, tmp_path):
    result = hwsim.simulate(deit_small_workload(4, 4, depth=1), presets["stripes"])
    rows = list(csv.DictReader(result.to_csv(tmp_path / "out" / "per_op.csv").open()))
    assert [row["name"] for row in rows] == [op.name for op in result.ops]
    assert int(rows[0]["cycles"]) == result.ops[0].cycles
    assert float(rows[1]["energy_pj"]) == pytest.approx(result.ops[1].energy_pj)
    payload = json.loads(result.to_json(tmp_path / "out" / "summary.json").read_text())
    assert payload["cycles"] == result.cycles and payload["accelerator"] == "stripes"
    assert payload["accelerator_config"]["array"]["windows"] == 16
    assert not list((tmp_path / "out").glob("*.tmp"))
