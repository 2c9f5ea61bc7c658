"""Closed forms of the PE-array models and the published relations they must reproduce."""

import math

import pytest

import accelerators
import hwsim


@pytest.fixture(scope="module")
def presets():
    return {name: accelerators.load(name) for name in accelerators.available()}


def with_dataflow(dataflow):
    config = accelerators.load("int8_systolic").config
    return accelerators.from_dict({**config, "array": {**config["array"], "dataflow": dataflow}})


@pytest.mark.parametrize(
    "dataflow, folds, per_fold",
    [
        ("ws", lambda m, k, n: math.ceil(k / 32) * math.ceil(n / 32), lambda m, k, n: 2 * 32 + 32 + m - 2),
        ("os", lambda m, k, n: math.ceil(m / 32) * math.ceil(n / 32), lambda m, k, n: 32 + 32 + k - 2),
        ("is", lambda m, k, n: math.ceil(k / 32) * math.ceil(m / 32), lambda m, k, n: 2 * 32 + 32 + n - 2),
    ],
)
@pytest.mark.parametrize("shape", [(197, 384, 1152), (197, 64, 197), (197, 197, 64), (197, 1536, 384),
                                   (197, 1024, 4096), (1, 384, 1000), (33, 31, 65)])
def test_systolic_compute_cycles_are_scalesims_fold_formula(dataflow, folds, per_fold, shape):
    m, k, n = shape
    accel = with_dataflow(dataflow)
    row = hwsim.estimate(hwsim.Gemm("g", m, k, n, 8, 8), accel)
    assert row.compute_cycles == folds(m, k, n) * per_fold(m, k, n)


def test_systolic_runs_low_bits_as_8_and_16_bits_in_passes(presets):
    accel = presets["int8_systolic"]
    cycles = {bits: hwsim.estimate(hwsim.Gemm("g", 197, 384, 384, *bits), accel).compute_cycles
              for bits in [(2, 2), (8, 8), (16, 8), (16, 16)]}
    assert cycles[(2, 2)] == cycles[(8, 8)]
    assert cycles[(16, 8)] == 2 * cycles[(8, 8)] and cycles[(16, 16)] == 4 * cycles[(8, 8)]


@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (8, 4), (4, 8), (2, 2), (8, 2), (2, 8), (3, 5), (16, 8), (16, 16)])
def test_bitfusion_compute_bound_cycles_are_macs_over_units_times_pf(presets, bits):
    accel = presets["bitfusion"]
    a, w = bits
    pf = (8 // max(a, 2) if a <= 8 else 1) * (8 // max(w, 2) if w <= 8 else 1)  # REFERENCE §5
    passes = (2 if a > 8 else 1) * (2 if w > 8 else 1)
    units = 16 * 32
    op = hwsim.Gemm("aligned", 256, 16 * 16 * 4, 32 * 8, a, w)  # K multiple of rows*pf, N of cols
    row = hwsim.estimate(op, accel)
    fill = accel.config["array"]["fill_drain_cycles"]
    assert row.compute_cycles - fill == op.macs * passes // (units * pf)


def test_bitfusion_published_throughput_relations(presets):
    accel = presets["bitfusion"]
    cycles = {b: hwsim.estimate(hwsim.Gemm("g", 1024, 4096, 1024, b, b), accel).compute_cycles for b in (8, 4, 2)}
    assert cycles[8] / cycles[4] == pytest.approx(4, rel=1e-3)
    assert cycles[4] / cycles[2] == pytest.approx(4, rel=1e-3)
    mac_8 = hwsim.estimate(hwsim.Gemm("g", 64, 512, 64, 8, 8), accel).energy_mac_pj
    mac_2 = hwsim.estimate(hwsim.Gemm("g", 64, 512, 64, 2, 2), accel).energy_mac_pj
    assert mac_8 == pytest.approx(16 * mac_2)
    assert mac_8 == pytest.approx(64 * 512 * 64 * 235.0 / 512)


def stripes_cycles(m, k, n, pa, fill=16):
    return math.ceil(n / 256) * math.ceil(k / 16) * min(math.ceil(m / 16) * pa, m) + fill


def loom_cycles(m, k, n, pa, pw, fill=16):
    return math.ceil(n / 4096) * math.ceil(k / 16) * min(math.ceil(m / 16) * pa * pw, m * pw) + fill


@pytest.mark.parametrize("shape", [(197, 384, 1152), (197, 64, 197), (1, 384, 1000), (5, 100, 300), (197, 1536, 384)])
@pytest.mark.parametrize("bits", [(16, 16), (8, 8), (4, 8), (8, 4), (2, 2), (1, 3)])
def test_stripes_and_loom_closed_forms(presets, shape, bits):
    m, k, n = shape
    pa, pw = bits
    op = hwsim.Gemm("g", m, k, n, pa, pw)
    assert hwsim.estimate(op, presets["stripes"]).compute_cycles == stripes_cycles(m, k, n, pa)
    assert hwsim.estimate(op, presets["loom"]).compute_cycles == loom_cycles(m, k, n, pa, pw)


def test_bit_serial_speedups_follow_the_papers(presets):
    conv = (16 * 64, 4096, 4096)  # many rows: the windows are full
    for pa in (16, 8, 4, 2):
        stripes = hwsim.estimate(hwsim.Gemm("g", *conv, pa, 16), presets["stripes"]).compute_cycles - 16
        base = hwsim.estimate(hwsim.Gemm("g", *conv, 16, 16), presets["stripes"]).compute_cycles - 16
        assert base / stripes == 16 / pa  # ideal 16/Pa
    fc = (1, 4096, 4096)  # one row: a fully connected layer
    assert (hwsim.estimate(hwsim.Gemm("g", *fc, 4, 16), presets["stripes"]).compute_cycles
            == hwsim.estimate(hwsim.Gemm("g", *fc, 16, 16), presets["stripes"]).compute_cycles)  # FC gains nothing
    loom = {pw: hwsim.estimate(hwsim.Gemm("g", *fc, 8, pw), presets["loom"]).compute_cycles - 16 for pw in (16, 4)}
    assert loom[16] / loom[4] == 4  # FC time proportional to Pw
    conv_loom = {b: hwsim.estimate(hwsim.Gemm("g", *conv, *b), presets["loom"]).compute_cycles - 16
                 for b in [(16, 16), (4, 8)]}
    assert conv_loom[(16, 16)] / conv_loom[(4, 8)] == 256 / 32  # conv time proportional to Pa*Pw


# Conv layers as GEMMs (rows = output positions, reduction = C·R·S, columns = filters) whose im2col
# input, output and weights fit the DaDianNao eDRAM at 16 bits: AlexNet conv1..conv5.
ON_CHIP_CONVS = [(3025, 363, 96), (729, 2400, 256), (169, 2304, 384), (169, 3456, 384), (169, 3456, 256)]


@pytest.mark.parametrize("shape", ON_CHIP_CONVS)
def test_conv_layers_on_chip_reach_the_papers_per_layer_scaling_in_total_cycles(presets, shape):
    """With layers held in the on-chip eDRAM (no DRAM traffic at all), total cycles scale as Stripes'
    16/Pa and Loom's 256/(Pa·Pw), within 5% (the fill/drain step and partly filled windows are the rest)."""
    stripes, loom = presets["stripes"], presets["loom"]
    base = {name: hwsim.estimate(hwsim.Gemm("conv", *shape, 16, 16), presets[name]) for name in ("stripes", "loom")}
    assert base["stripes"].dram_read_bits == base["loom"].dram_write_bits == 0
    for pa in range(1, 16):
        row = hwsim.estimate(hwsim.Gemm("conv", *shape, pa, 16), stripes)
        assert base["stripes"].cycles / row.cycles == pytest.approx(16 / pa, rel=0.05), pa
    for pa, pw in [(8, 8), (4, 4), (2, 2), (1, 1), (8, 4), (4, 8), (2, 8), (16, 1)]:
        row = hwsim.estimate(hwsim.Gemm("conv", *shape, pa, pw), loom)
        assert base["loom"].cycles / row.cycles == pytest.approx(256 / (pa * pw), rel=0.05), (pa, pw)


def test_fully_connected_layers_gain_what_the_papers_say(presets):
    """Stripes: nothing for FC (one row runs bit-parallel; weights stay 16-bit, so DRAM time is the same too).
    Loom: FC time ∝ Pw, both when its weights stream from DRAM at Pw bits (AlexNet fc6: 75 MB at 16 bits,
    38 MB at 8, over the 32 MB eDRAM) and when they are held on chip (fc8, and fc6 from Pw = 4 on)."""
    stripes, loom = presets["stripes"], presets["loom"]
    fc6, fc8 = (1, 9216, 4096), (1, 4096, 1000)
    for shape in (fc6, fc8):
        assert len({hwsim.estimate(hwsim.Gemm("fc", *shape, pa, 16), stripes).cycles for pa in (16, 8, 4, 1)}) == 1
    streamed = {pw: hwsim.estimate(hwsim.Gemm("fc6", *fc6, 16, pw), loom) for pw in (16, 8)}
    assert streamed[16].dram_read_bits == 9216 * 4096 * 16  # the input row comes from the neuron eDRAM
    held = {pw: hwsim.estimate(hwsim.Gemm("fc8", *fc8, 16, pw), loom) for pw in (16, 8, 4, 2)}
    assert held[16].dram_read_bits == 0
    fits = {pw: hwsim.estimate(hwsim.Gemm("fc6", *fc6, 16, pw), loom) for pw in (4, 2, 1)}
    assert fits[4].dram_read_bits == 0 and fits[4].cycles / fits[1].cycles == pytest.approx(4, rel=0.05)
    for rows in (streamed, held):
        for pw, row in rows.items():
            assert rows[16].cycles / row.cycles == pytest.approx(16 / pw, rel=0.05), pw


def test_a_layer_too_big_for_the_edram_streams_from_dram(presets):
    """VGG-16 conv1_2: its im2col input (50176 x 576 at 8 bits, 29 MB) exceeds the 4 MB neuron memory."""
    row = hwsim.estimate(hwsim.Gemm("conv1_2", 50176, 576, 64, 8, 16), presets["stripes"])
    assert row.dram_read_bits >= 50176 * 576 * 8 and row.dram_write_bits == 50176 * 64 * 8
