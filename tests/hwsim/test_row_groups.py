"""Patch-wise GEMMs: token groups at their own bits run as sub-GEMMs, plus the regrouping work."""

import dataclasses

import pytest

import accelerators
import hwsim

PRECISION_SCALABLE = ("bitfusion", "stripes", "loom")


def chain(*ops) -> hwsim.Workload:
    workload, previous = hwsim.Workload(), []
    for op in ops:
        workload.add(op, after=previous)
        previous = [op.name]
    return workload


def qk_grouped() -> hwsim.Gemm:
    """DeiT-S q·kᵀ without the class row: 196 query rows (48 at 8 bits), 197 key columns (49 at 8 bits)."""
    return hwsim.Gemm("qk", 196, 64, 197, 8, 8, count=6, kind="matmul",
                      row_groups=((48, 8), (148, 4)), col_groups=((49, 8), (148, 4)))


def av_grouped() -> hwsim.Gemm:
    return hwsim.Gemm("av", 197, 197, 64, 8, 8, count=6, kind="matmul",
                      row_groups=((49, 8), (60, 4), (88, 2)), depth_groups=((49, 8), (148, 4)))


@pytest.mark.parametrize("name", [*PRECISION_SCALABLE, "int8_systolic"])
def test_row_group_simulation_is_the_sum_of_the_separate_gemms_plus_regrouping(presets, name):
    accel = presets[name]
    regroup = hwsim.VectorOp("regroup", "regroup", 3 * 197 * 384)
    for op in (qk_grouped(), av_grouped()):
        grouped = hwsim.simulate(chain(regroup, op), accel)
        merge = [op.merge_op()] if op.merge_op() else []
        separate = hwsim.simulate(chain(regroup, *op.parts(), *merge), accel)
        assert len(op.parts()) == len(op.row_groups) * len(op.col_groups or op.depth_groups)
        assert grouped.cycles == separate.cycles
        assert grouped.energy_pj == pytest.approx(separate.energy_pj, rel=1e-12)
        assert grouped.bops == separate.bops == sum(p.macs * p.bits_a * p.bits_b for p in op.parts())
        assert grouped.dram_read_bits == separate.dram_read_bits
        assert grouped.macs == separate.macs == op.macs
        assert grouped[op.name].cycles == grouped.cycles - grouped["regroup"].cycles
        assert 0 < grouped[op.name].utilization <= 1


def test_estimate_of_grouped_gemms_matches_simulation(presets):
    for accel in presets.values():
        for op in (qk_grouped(), av_grouped(), dataclasses.replace(qk_grouped(), count=1, m=7,
                                                                   row_groups=((1, 8), (6, 2)))):
            simulated = hwsim.simulate(chain(op), accel).ops[0]
            estimated = hwsim.estimate(op, accel)
            assert estimated.compute_cycles == simulated.compute_cycles
            assert abs(estimated.cycles - simulated.cycles) <= 0.05 * simulated.cycles
            assert estimated.energy_mac_pj == pytest.approx(simulated.energy_mac_pj)


def test_demoted_rows_run_faster_on_precision_scalable_arrays_and_not_on_int8(presets):
    plain = hwsim.Gemm("fc1", 197 * 8, 384, 1536, 8, 8)
    half = dataclasses.replace(plain, row_groups=((99 * 8, 8), (98 * 8, 4)))
    for name in PRECISION_SCALABLE:
        assert hwsim.estimate(half, presets[name]).compute_cycles < hwsim.estimate(plain, presets[name]).compute_cycles
    int8 = presets["int8_systolic"]
    assert hwsim.estimate(half, int8).compute_cycles >= hwsim.estimate(plain, int8).compute_cycles
    assert half.bops == plain.macs * 8 * (99 * 8 + 98 * 4) // 197


def test_a_single_group_at_the_nominal_bits_is_the_plain_gemm(presets):
    plain = hwsim.Gemm("g", 50, 32, 50, 8, 8, count=4, kind="matmul")
    same = dataclasses.replace(plain, row_groups=((50, 8),), col_groups=((50, 8),))
    for accel in presets.values():
        a, b = hwsim.estimate(plain, accel), hwsim.estimate(same, accel)
        assert (a.cycles, a.energy_pj, a.bops) == (b.cycles, b.energy_pj, b.bops)


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"row_groups": ((10, 8), (30, 4))}, "sum to 40, not m=50"),
    ({"row_groups": ((50, 17),)}, "row_groups bits"),
    ({"row_groups": ((0, 8), (50, 4))}, "row_groups size"),
    ({"col_groups": ((25, 8), (25, 4)), "depth_groups": ((16, 8), (16, 4))}, "not both"),
    ({"depth_groups": [8, 4]}, "(size, bits) pairs"),
])
def test_bad_groups_are_one_line_errors(changes, fragment):
    with pytest.raises(hwsim.WorkloadError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
        hwsim.Gemm("g", 50, 32, 50, 8, 8, **changes)
    assert len(str(info.value).splitlines()) == 1


def test_token_vector_kinds_are_priced_by_every_preset():
    assert {"token_score", "regroup"} <= set(hwsim.VECTOR_KINDS)
    for name in accelerators.available():
        accel = accelerators.load(name)
        for kind in ("token_score", "regroup"):
            assert accel.vector.cycles_per_element[kind] > 0 and accel.vector.energy_pj_per_element[kind] > 0
            assert f"vector.cycles_per_element.{kind}" in accel.sources
        op = hwsim.VectorOp("r", "regroup", 1000)
        assert hwsim.simulate(chain(op), accel).cycles == hwsim.estimate(op, accel).cycles


def test_grouped_gemms_expand_into_the_topology_csv(tmp_path):
    path = chain(dataclasses.replace(qk_grouped(), count=1)).to_topology_csv(tmp_path / "t.csv")
    assert len(path.read_text().splitlines()) == 1 + 4
