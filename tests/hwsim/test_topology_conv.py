"""SCALE-Sim convolution topologies (header ``Layer name, IFMAP Height, ...``) are read as SCALE-Sim maps them."""

from pathlib import Path

import pytest

import hwsim

TOPOLOGIES = Path(__file__).parent / "data" / "scalesim_topologies"
HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def test_scalesim_conv_topology_becomes_valid_padding_im2col_gemms():
    (op,) = hwsim.Workload.from_topology_csv(TOPOLOGIES / "test.csv", bits_a=4, bits_b=2).ops  # Inc5b_3x3
    assert (op.m, op.k, op.n) == (5 * 5, 3 * 3 * 192, 384)  # 7x7 input, 3x3 filter, stride 1: 5x5 outputs
    assert op.conv == hwsim.Conv2d(3, 3, 1, 5, 5, 192)
    assert (op.bits_a, op.bits_b) == (4, 2)


def test_strided_conv_rounds_outputs_up_as_scalesim_does(tmp_path):
    path = tmp_path / "alex.csv"
    path.write_text(HEADER + "Conv1, 224, 224, 11, 11, 3, 96, 4,\nConv2, 27, 27, 5, 5, 96, 256, 1,\n")
    first, second = hwsim.Workload.from_topology_csv(path).ops
    assert (first.conv.out_h, first.m, first.k, first.n) == (55, 55 * 55, 363, 96)  # ceil((224 - 11 + 4) / 4)
    assert (second.conv.out_h, second.k) == (23, 2400)


def test_gemm_topology_still_reads_as_gemms():
    ops = hwsim.Workload.from_topology_csv(TOPOLOGIES / "vit_s.csv").ops
    assert [(op.m, op.k, op.n) for op in ops][0] == (196, 384, 192) and all(op.conv is None for op in ops)


@pytest.mark.parametrize(("row", "needle"), [
    ("c, 7, 7, 3, 3, 192,\n", "expected Layer name"),
    ("c, 7, 7, 9, 3, 192, 384, 1,\n", "no larger than the input"),
    ("c, 7, 7, 3, x, 192, 384, 1,\n", "must be integers"),
])
def test_bad_conv_rows_are_one_clear_error(tmp_path, row, needle):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + row)
    with pytest.raises(hwsim.WorkloadError, match=needle):
        hwsim.Workload.from_topology_csv(path)


def test_conv_geometry_must_match_the_gemm():
    with pytest.raises(hwsim.WorkloadError, match="conv geometry"):
        hwsim.Gemm("c", 10, 27, 8, 8, 8, conv=hwsim.Conv2d(3, 3, 1, 5, 5, 3))
