"""The re-implemented BitFusion mapping picks the same tiling cost as the public simulator, row for row.

Reference rows: ``tests/hwsim/data/bitfusion_reference.json`` (the unmodified simulator under
Python 2.7, see the file's ``commands``)."""

import json
from pathlib import Path

import pytest

import accelerators
from hwsim.reference.bitfusion import BitFusionArch, ConvShape, search

REFERENCE = json.loads((Path(__file__).parent / "data" / "bitfusion_reference.json").read_text())
ARCH = BitFusionArch.from_accelerator(accelerators.load("bitfusion"))


def _shape(row) -> ConvShape:
    return ConvShape(row["K"], row["O"], row["S"], row["IC"], row["OC"], row["B"], row["a_bits"], row["w_bits"],
                     row["im2col"])


def _check(rows):
    assert rows
    for row in rows:
        mapping = search(_shape(row), ARCH)
        theirs = (row["cycles"], row["dram_read_bits"], row["dram_write_bits"])
        assert (mapping.cycles, mapping.dram_read_bits, mapping.stores) == theirs, row.get("layer", row.get("name"))


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
