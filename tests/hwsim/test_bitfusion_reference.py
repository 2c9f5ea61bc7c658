"""The re-implemented BitFusion mapping picks the same tiling cost as the public simulator, row for row.

Reference rows: ``tests/hwsim/data/bitfusion_reference.json`` (the unmodified simulator under
Python 2.7, see the file's ``commands``)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import accelerators
import hwsim
from hwsim.pipeline import Steps, pipeline_cycles
from hwsim.reference.bitfusion import BitFusionArch, ConvShape, gemm_of, search

REFERENCE = json.loads((Path(__file__).parent / "data" / "bitfusion_reference.json").read_text())
ARCH = BitFusionArch.from_accelerator(accelerators.load("bitfusion"))


def _shape(row) -> ConvShape:
    return ConvShape(row["K"], row["O"], row["S"], row["IC"], row["OC"], row["B"], row["a_bits"], row["w_bits"],
                     row["im2col"])


def _check(rows):
    """Same tiling, same loop order (where it matters), same cycles and DRAM bits as the simulator."""
    assert rows
    for row in rows:
        mapping = search(_shape(row), ARCH)
        theirs = (row["cycles"], row["dram_read_bits"], row["dram_write_bits"])
        assert (mapping.cycles, mapping.dram_read_bits, mapping.stores) == theirs, row.get("layer", row.get("name"))
        assert {loop: mapping.sizes[loop.split("/")[1]] for loop in row["tiling"]} == \
            {loop: size for loop, (_, size) in row["tiling"].items()}
        assert mapping.order == tuple(loop.split("/")[1] for loop in row["order"])


def test_arch_matches_the_simulator_config():
    config = REFERENCE["config"]
    assert (ARCH.rows, ARCH.cols, ARCH.if_width) == (config["N"], config["M"], config["if_width"])
    assert ARCH.buffer_bits == {t: 8 * config["sram_bytes"][t] for t in ("act", "wgt", "out")}


def test_deit_gemms_reproduce_the_simulator_exactly():
    _check(REFERENCE["gemms"])


def test_fully_connected_rows_reproduce_the_simulator_exactly():
    _check([row for row in REFERENCE["networks"] if row["K"] == 1 and row["O"] == 1])


@pytest.mark.slow
def test_convolution_rows_reproduce_the_simulator_exactly():
    _check([row for row in REFERENCE["networks"] if not (row["K"] == 1 and row["O"] == 1)])


def test_outputs_move_as_32_bit_partial_sums_loaded_as_often_as_stored():
    for a_bits, w_bits in ((8, 8), (4, 4), (2, 2), (8, 2)):
        mapping = search(ConvShape.gemm(197, 1536, 384, a_bits, w_bits), ARCH)  # DeiT-S fc2
        assert mapping.stores == mapping.loads["out"]
        assert mapping.stores >= 197 * 384 * 32  # never fewer than the outputs once, at 32 bits


# Replay: the simulator's mapping priced by hwsim's own cost model (pipeline, DRAM channel, array).
# Every committed row holds: the preset states the simulator's own conventions (no array fill/drain,
# bitfusion.yaml array.fill_drain_cycles: 0; DRAM traffic streamed, not rounded per transfer to
# 192-bit beats, dram.transfer_bits: 1), which closed the former misses (attn_v at 2-bit activations,
# SVHN fc8, LeNet-5 fc2).


def _op(row) -> hwsim.Gemm:
    if "network" not in row:
        return gemm_of(ConvShape.gemm(row["m"], row["k"], row["n"], row["a_bits"], row["w_bits"]), row["name"])
    return gemm_of(_shape(row), f"{row['network']}/{row['layer']}")


def _key(row):
    if "network" in row:
        return row["network"], row["layer"]
    return row["name"], row["m"], row["a_bits"], row["w_bits"]


def _check_replay(rows):
    accel = accelerators.load("bitfusion")
    for row in rows:
        ours = hwsim.estimate(_op(row), accel, mapper=hwsim.ReferenceMapper())
        cycles_err = abs(ours.cycles / row["cycles"] - 1)
        assert cycles_err <= 0.10, (_key(row), ours.cycles, row["cycles"])
        theirs = row["dram_read_bits"] + row["dram_write_bits"]
        assert abs((ours.dram_read_bits + ours.dram_write_bits) / theirs - 1) <= 0.15, _key(row)


def test_replay_of_deit_gemms_batch_1_within_10_percent_cycles_15_percent_dram():
    _check_replay([row for row in REFERENCE["gemms"] if row["m"] == 197])


@pytest.mark.slow
def test_replay_of_deit_gemms_batch_16_within_10_percent_cycles_15_percent_dram():
    _check_replay([row for row in REFERENCE["gemms"] if row["m"] != 197])


def test_replay_of_its_fully_connected_rows():
    _check_replay([row for row in REFERENCE["networks"] if row["K"] == 1 and row["O"] == 1])


@pytest.mark.slow
def test_replay_whole_networks_within_15_percent():
    accel = accelerators.load("bitfusion")
    networks = {row["network"] for row in REFERENCE["networks"]}
    assert networks == {"AlexNet", "SVHN", "CIFAR10", "LeNet-5", "VGG-7", "RESNET-18", "RNN", "LSTM"}
    for network in networks:
        rows = [row for row in REFERENCE["networks"] if row["network"] == network]
        workload = hwsim.Workload()
        for row in rows:
            workload.add(_op(row))
        ours = hwsim.estimate_workload(workload, accel, mapper=hwsim.ReferenceMapper()).cycles
        theirs = sum(row["cycles"] for row in rows)
        assert abs(ours / theirs - 1) <= 0.15, (network, ours, theirs)


def test_replay_plan_moves_psums_as_the_simulator_does():
    accel = accelerators.load("bitfusion")
    row = next(r for r in REFERENCE["gemms"] if (r["name"], r["m"], r["a_bits"], r["w_bits"]) == ("fc1", 197, 2, 2))
    cost = hwsim.estimate(_op(row), accel, mapper=hwsim.ReferenceMapper())
    assert (cost.dram_read_bits, cost.dram_write_bits) == (row["dram_read_bits"], row["dram_write_bits"])
    assert cost.dram_write_bits == 197 * 1536 * 32  # 32-bit outputs, written once
    searched = hwsim.estimate(_op(row), accel)  # the mapper never loads an output before its first k-step
    assert searched.dram_read_bits <= cost.dram_read_bits - 197 * 1536 * 32


def test_reference_mapping_needs_a_reference_simulator():
    with pytest.raises(hwsim.HwsimError, match="no reference mapping"):
        hwsim.estimate(hwsim.Gemm("g", 8, 8, 8, 8, 8), accelerators.load("stripes"), mapper=hwsim.ReferenceMapper())
    with pytest.raises(hwsim.HwsimError, match="mapping must be one of"):
        hwsim.mapper_for("best")
    assert isinstance(hwsim.mapper_for("reference"), hwsim.ReferenceMapper)


def test_event_simulation_runs_the_replayed_plan_as_estimate_prices_it():
    workload = hwsim.Workload()
    workload.add(hwsim.Gemm("fc1", 197, 384, 1536, 4, 4))
    workload.add(hwsim.Gemm("q_kT", 197, 64, 197, 4, 4, count=6, kind="matmul"), after=["fc1"])
    for preset in ("bitfusion", "int8_systolic"):
        accel = accelerators.load(preset)
        simulated = hwsim.simulate(workload, accel, mapper=hwsim.ReferenceMapper())
        estimated = hwsim.estimate_workload(workload, accel, mapper=hwsim.ReferenceMapper())
        assert [op.cycles for op in simulated.ops] == [op.cycles for op in estimated.ops]
        assert simulated.dram_read_bits == estimated.dram_read_bits > 0


def test_streamed_dram_transfers_close_the_small_transfer_gap_and_simulation_agrees():
    """attn_v at 2-bit activations moves ~1,000-bit blocks per tile: rounded to whole 192-bit beats it
    runs +9.9% over the simulator (+10.7..+11.8% with the old 46-cycle fill/drain); streamed
    (``dram.transfer_bits: 1``, the simulator's convention) it matches, and the event simulation
    schedules the same fractional-beat transfers."""
    key = ("attn_v", 197, 2, 8)
    row = next(r for r in REFERENCE["gemms"] if (r["name"], r["m"], r["a_bits"], r["w_bits"]) == key)
    streamed = accelerators.load("bitfusion")
    assert (streamed.dram.transfer_bits, streamed.dram.ticks_per_cycle) == (1, 192)
    beats = dataclasses.replace(streamed, dram=dataclasses.replace(streamed.dram, transfer_bits=None))
    assert beats.dram.ticks_per_cycle == 1
    mapper = hwsim.ReferenceMapper()
    workload = hwsim.Workload()
    workload.add(_op(row))
    cycles = {}
    for name, accel in (("streamed", streamed), ("beats", beats)):
        estimated = hwsim.estimate_workload(workload, accel, mapper=mapper)
        assert [op.cycles for op in hwsim.simulate(workload, accel, mapper=mapper).ops] == \
            [op.cycles for op in estimated.ops]
        cycles[name] = estimated.cycles
    assert abs(cycles["streamed"] / row["cycles"] - 1) < 0.01
    assert cycles["beats"] / row["cycles"] - 1 > 0.09


def test_pipeline_prices_transfers_in_units_and_rounds_the_total_once():
    """Four 100-bit fetches, no compute: whole beats cost 1 cycle each (4); streamed at 192 bits/cycle
    they take 400/192 of a cycle, rounded up once (3)."""
    steps = Steps(np.full(4, 100), np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64))
    accel = accelerators.load("bitfusion")
    beats = dataclasses.replace(accel, dram=dataclasses.replace(accel.dram, transfer_bits=None))
    assert pipeline_cycles(steps, beats) == 4
    assert pipeline_cycles(steps, accel) == 3


def test_bitfusion_charges_no_array_fill_drain_as_its_simulator():
    accel = accelerators.load("bitfusion")
    op = gemm_of(ConvShape.gemm(16, 256, 32, 8, 8), "one_tile")  # one 16x32 array pass of 16 reduction steps
    assert accel.array.instance_overhead_cycles(op) == 0
    assert hwsim.estimate(op, accel, mapper=hwsim.ReferenceMapper()).compute_cycles == 16 * 256 // (16 * 1)
