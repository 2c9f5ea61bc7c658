"""The mapper: exact optimum over its grid, plans costed identically by estimate and simulation,
monotone in bits, memory facts (psum spills, 32-bit outputs, 1-bit storage, on-chip eDRAM)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
from hwsim import mapper
from hwsim.grid import candidates, grid_of
from hwsim.pipeline import Variants, batch_cycles, batch_steps, pipeline_cycles, pipeline_totals

PRESETS = ("bitfusion", "int8_systolic", "loom", "stripes")


def one_op(op):
    w = hwsim.Workload()
    w.add(op)
    return w


class Fixed:
    """A mapper that replays one given plan, as a reference simulator's mapping is replayed."""

    def __init__(self, plan):
        self.chosen = plan

    def plan(self, op, accel):
        return self.chosen


def every_plan(op, accel):
    """Every legal plan of the mapper's grid (tile sizes x loop orders), by brute force."""
    sizes = [candidates(dim, align) for dim, align in zip((op.m, op.k, op.n), accel.array.alignment(), strict=True)]
    for mt, kt, nt in itertools.product(*sizes):
        for order in accel.array.loop_orders():
            try:
                yield hwsim.make_plan(op, accel, int(mt), int(kt), int(nt), order)
            except hwsim.TileError:
                continue


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("objective", ["cycles", "energy"])
def test_mapper_returns_the_exact_optimum_of_its_grid(presets, name, objective):
    """Branch and bound over lower bounds loses nothing: the pick equals brute force over every plan."""
    accel = presets[name]
    for op in (hwsim.Gemm("g", 50, 96, 70, 4, 8), hwsim.Gemm("h", 33, 200, 48, 2, 2, count=3, kind="matmul")):
        mapping = hwsim.map_gemm(op, accel, objective)
        costs = [hwsim.cost_plan(plan, accel) for plan in every_plan(op, accel)]
        value = (lambda c: c.cycles) if objective == "cycles" else (lambda c: c.energy_pj)
        assert value(mapping.cost) == pytest.approx(min(value(c) for c in costs), rel=1e-12)
        assert mapping.cost == hwsim.cost_plan(mapping.plan, accel) == hwsim.estimate(op, accel, hwsim.SearchMapper(
            objective))


ORDERS = st.sampled_from(["mkn", "mnk", "kmn", "knm", "nmk", "nkm"])


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(PRESETS), shape=st.tuples(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300)),
       split=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)), order=ORDERS,
       bits=st.tuples(st.integers(1, 16), st.integers(1, 16)), count=st.integers(1, 3),
       psum=st.sampled_from([None, "dram"]))
def test_tile_steps_add_up_to_the_closed_form_and_simulation_runs_them(presets, name, shape, split, order, bits,
                                                                      count, psum):
    accel = presets[name]
    op = hwsim.Gemm("g", *shape, *bits, count=count)
    tiles = [-(-dim // parts) for dim, parts in zip(shape, split, strict=True)]
    try:
        plan = hwsim.make_plan(op, accel, *tiles, order, psum=psum)
    except hwsim.TileError:
        return
    steps, metrics = plan.steps(accel), plan.metrics(accel)
    assert int(steps.load_bits.sum()) == metrics["dram_read"]
    assert int(steps.store_bits.sum()) == metrics["dram_write"]
    assert int(steps.compute.sum()) == metrics["compute"]
    variants = Variants.of([op], accel, [(plan.bits_a, plan.bits_b, plan.bits_out, plan.psum_bits)], [plan.resident],
                           [plan.onchip], *(np.array([x]) for x in tiles))
    arguments = (variants, *(np.array([x]) for x in tiles), *(np.array([order.index(d)]) for d in "mkn"), np.array([0]),
                 np.array([plan.spills]), np.array([0]))
    cycles, compute = pipeline_totals(op, accel, *arguments)
    assert batch_cycles(batch_steps(op, accel, *arguments), count, accel)[0] == pipeline_cycles(steps, accel) \
        == cycles[0]
    assert compute[0] == metrics["compute"]
    row = hwsim.simulate(one_op(op), accel, mapper=Fixed(plan)).ops[0]
    assert row == hwsim.estimate(op, accel, mapper=Fixed(plan)) == hwsim.cost_plan(plan, accel)


@pytest.mark.parametrize("name", ["bitfusion", "int8_systolic"])
def test_grid_drops_only_loop_orders_that_run_the_same_steps_as_one_it_keeps(presets, name):
    accel = presets[name]
    op = hwsim.Gemm("g", 20, 70, 36, 4, 8)
    grid = grid_of(op, accel)
    orders = accel.array.loop_orders()

    def steps(mt, kt, nt, order):
        plan = hwsim.GemmPlan(op, int(mt), int(kt), int(nt), order, "buffer", *mapper.widths(op, accel))
        run = plan.steps(accel)
        return run.load_bits.tolist(), run.compute.tolist(), run.store_bits.tolist()

    for tile, sizes in enumerate(zip(*grid.tiles, strict=True)):
        kept = {"".join(d for _, d in sorted(zip(position, "mkn", strict=True)))
                for position in zip(*(p[grid.tile == tile] for p in (grid.pm, grid.pk, grid.pn)), strict=True)}
        assert kept and {tuple(map(tuple, steps(*sizes, order))) for order in orders} == \
            {tuple(map(tuple, steps(*sizes, order))) for order in kept}


def test_replayed_plan_with_spilled_partial_sums_moves_exactly_those_bits(presets):
    """k outermost with two column blocks: each output block is left between k-steps, so its 32-bit
    partial sums go to DRAM and come back (k-blocks − 1) times; outputs leave at BitFusion's 32 bits."""
    accel = presets["bitfusion"]
    op = hwsim.Gemm("g", 64, 256, 64, 8, 8)
    plan = hwsim.make_plan(op, accel, 64, 64, 32, "knm", psum="dram")
    assert plan.spills and plan.label == "64x64x32/knm/psum-dram"
    spilled = 64 * 64 * 32 * (4 - 1)
    row = hwsim.simulate(one_op(op), accel, mapper=Fixed(plan)).ops[0]
    assert row.dram_read_bits == 64 * 256 * 8 + 256 * 64 * 8 + spilled
    assert row.dram_write_bits == 64 * 64 * 32 + spilled
    assert hwsim.make_plan(op, accel, 64, 64, 32, "knm").psum == "dram"  # 64x64 psums overflow 8 KB (half)
    half = hwsim.Gemm("g", 32, 256, 64, 8, 8)
    kept = hwsim.make_plan(half, accel, 32, 64, 32, "knm")  # 32x64 32-bit psums fill half the 16 KB exactly
    assert kept.psum == "buffer" and hwsim.cost_plan(kept, accel).dram_write_bits == 32 * 64 * 32


def test_bitfusion_memory_facts_32_bit_outputs_and_1_bit_storage(presets):
    accel = presets["bitfusion"]
    for bits in (2, 8):
        assert hwsim.estimate(hwsim.Gemm("fc1", 197, 384, 1536, bits, bits), accel).dram_write_bits == 197 * 1536 * 32
    one, two = (hwsim.estimate(hwsim.Gemm("g", 16, 64, 32, a, 8), accel) for a in (1, 2))
    assert two.dram_read_bits - one.dram_read_bits == 16 * 64  # 1-bit activations stored at 1 bit, not 2


def test_plans_are_cached_by_shape_bits_and_preset(presets):
    accel = presets["loom"]
    first = hwsim.map_gemm(hwsim.Gemm("a", 197, 384, 384, 4, 4), accel)
    again = hwsim.map_gemm(hwsim.Gemm("b", 197, 384, 384, 4, 4), accel)
    assert again.plan == hwsim.make_plan(again.plan.op, accel, first.plan.mt, first.plan.kt, first.plan.nt,
                                         first.plan.order)
    assert (first.cost.name, again.cost.name, again.plan.op.name) == ("a", "b", "b")
    assert first.candidates == again.candidates and first.evaluated == again.evaluated


def test_unknown_objective_is_a_one_line_error():
    with pytest.raises(hwsim.HwsimError, match="mapping objective must be one of cycles, energy, edp, got 'area'"):
        hwsim.SearchMapper("area")


BITS = st.tuples(*[st.integers(1, 16)] * 4)
KINDS = st.sampled_from(["linear", "matmul"])


def check_fewer_bits_cost_no_more(presets, shape, count, bits, kind):
    """A plan legal at wide bits is legal at narrow bits and no slower there, and the mapper finds the
    exact optimum, so the cost table is monotone: fewer bits in either operand never cost more cycles
    (by cycles), nor more energy or DRAM bits (by energy). Exact, no tolerance."""
    a1, a2, b1, b2 = bits
    wide = hwsim.Gemm("g", *shape, max(a1, a2), max(b1, b2), count=count, kind=kind)
    narrow = hwsim.Gemm("g", *shape, min(a1, a2), min(b1, b2), count=count, kind=kind)
    for name in PRESETS:
        accel = presets[name]
        assert hwsim.estimate(narrow, accel).cycles <= hwsim.estimate(wide, accel).cycles, name
        by_energy = hwsim.SearchMapper("energy")
        fast, slow = hwsim.estimate(narrow, accel, by_energy), hwsim.estimate(wide, accel, by_energy)
        assert fast.energy_pj <= slow.energy_pj * (1 + 1e-12), name
        assert fast.dram_read_bits + fast.dram_write_bits <= slow.dram_read_bits + slow.dram_write_bits, name


@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 512)] * 3), count=st.integers(1, 2), bits=BITS, kind=KINDS)
def test_fewer_bits_never_cost_more_on_small_shapes(presets, shape, count, bits, kind):
    check_fewer_bits_cost_no_more(presets, shape, count, bits, kind)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 4096)] * 3), count=st.integers(1, 2), bits=BITS, kind=KINDS)
def test_fewer_bits_never_cost_more_on_shapes_up_to_4096(presets, shape, count, bits, kind):
    check_fewer_bits_cost_no_more(presets, shape, count, bits, kind)


def test_outputs_may_be_written_back_wider_than_16_bits(presets):
    """A GEMM may hand its consumer 32-bit outputs (e.g. un-requantised accumulators) on a preset that
    writes outputs at the op's own width; 33 bits is no width any accumulator here produces."""
    op = hwsim.Gemm("g", 64, 64, 64, 8, 8, bits_out=32)
    row = hwsim.estimate(op, presets["int8_systolic"])
    assert row.dram_write_bits == 64 * 64 * 32 == 4 * hwsim.estimate(hwsim.Gemm("g", 64, 64, 64, 8, 8),
                                                                      presets["int8_systolic"]).dram_write_bits
    with pytest.raises(hwsim.WorkloadError, match=r"bits_out must be an integer in 1\.\.32, got 33"):
        hwsim.Gemm("g", 4, 4, 4, 8, 8, bits_out=33)
