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
