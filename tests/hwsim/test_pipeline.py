"""hwsim.pipeline: the closed form equals the steps it stands for; bit variants priced together equal
each priced alone; the mapper's joint search of variants picks what a search of each alone picks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
from hwsim import mapper, pipeline
from hwsim.grid import grid_of
from hwsim.pipeline import Variants, batch_cycles, batch_steps, pipeline_totals

PRESETS = ("bitfusion", "int8_systolic", "loom", "stripes")
DIM = st.sampled_from([1, 2, 3, 5, 7, 16, 33, 64, 100, 197, 384, 1000])


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(PRESETS), shape=st.tuples(DIM, DIM, DIM), count=st.sampled_from([1, 2, 6]),
       kind=st.sampled_from(["linear", "matmul"]), bits=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 8]),
                                                                           st.sampled_from([2, 4, 8, 16])),
                                                                 min_size=1, max_size=3),
       resident=st.booleans(), seed=st.integers(0, 2**16))
def test_closed_form_of_many_variants_equals_each_variants_steps(presets, name, shape, count, kind, bits, resident,
                                                                 seed):
    """Plans with up to 1000 blocks per loop (the representatives stand for most of them), spilled or not,
    resident operands or not, three bit variants at once: each equals its own listed steps."""
    accel, rng = presets[name], np.random.default_rng(seed)
    ops = [hwsim.Gemm("g", *shape, a, b, count=count, kind=kind) for a, b in bits]
    grid = grid_of(ops[0], accel)
    pick = np.sort(rng.choice(len(grid.mt), size=min(25, len(grid.mt)), replace=False))
    plans = [x[pick] for x in (grid.mt, grid.kt, grid.nt, grid.pm, grid.pk, grid.pn)]
    spill = rng.random((len(ops), len(pick))) < 0.5  # per variant and plan
    held = [mapper.onchip(op, accel) for op in ops]
    placed = [mapper._resident(op, accel, h) if resident else frozenset() for op, h in zip(ops, held, strict=True)]
    known = [mapper.widths(op, accel) for op in ops]
    variants = Variants.of(ops, accel, known, placed, held, *grid.tiles)
    every = np.repeat(np.arange(len(ops)), len(pick))  # each plan for each variant, in one call
    cycles, compute = (x.reshape(len(ops), len(pick)) for x in pipeline_totals(
        ops[0], accel, variants, *(np.tile(x, len(ops)) for x in (*plans, grid.tile[pick])), spill.ravel(), every))
    for v, op in enumerate(ops):
        alone = Variants.of([op], accel, [known[v]], [placed[v]], [held[v]], *plans[:3])
        steps = batch_steps(op, accel, alone, *plans, np.arange(len(pick)), spill[v], np.zeros(len(pick), dtype=int))
        assert np.array_equal(cycles[v], batch_cycles(steps, op.count, accel))
        assert np.array_equal(compute[v], np.add.reduceat(steps.compute, steps.start))


@pytest.mark.parametrize("rows", [1, 50, 8192])
def test_closed_form_in_slices_equals_it_in_one_pass(presets, monkeypatch, rows):
    """Plans are costed in slices of about ``ROWS`` steps: any slice size gives the same totals."""
    accel, rng = presets["bitfusion"], np.random.default_rng(0)
    ops = [hwsim.Gemm("g", 197, 64, 197, a, b, count=6, kind="matmul") for a, b in ((4, 8), (2, 2))]
    grid = grid_of(ops[0], accel)
    held = [mapper.onchip(op, accel) for op in ops]
    variants = Variants.of(ops, accel, [mapper.widths(op, accel) for op in ops],
                           [mapper._resident(op, accel, h) for op, h in zip(ops, held, strict=True)], held, *grid.tiles)
    every = np.repeat(np.arange(len(ops)), len(grid.mt))
    plans = (*(np.tile(x, len(ops)) for x in (grid.mt, grid.kt, grid.nt, grid.pm, grid.pk, grid.pn, grid.tile)),
             rng.random(len(every)) < 0.5, every)
    monkeypatch.setattr(pipeline, "ROWS", 10**9)
    whole = pipeline_totals(ops[0], accel, variants, *plans)
    monkeypatch.setattr(pipeline, "ROWS", rows)
    sliced = pipeline_totals(ops[0], accel, variants, *plans)
    assert len(whole[0]) == len(every) and all(np.array_equal(a, b) for a, b in zip(whole, sliced, strict=True))


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("objective", ["cycles", "energy"])
def test_variants_searched_together_pick_what_each_alone_picks(presets, name, objective):
    accel = presets[name]
    ops = [hwsim.Gemm("g", 197, 384, 1152, a, w) for a, w in ((2, 2), (3, 8), (4, 4), (8, 2), (8, 8))]
    mapper.SEARCHED.clear()
    together = [(found.plan, found.cost) for found in mapper._search_variants(tuple(ops), accel, objective)]
    alone = [(found.plan, found.cost) for op in ops for found in mapper._search_variants((op,), accel, objective)]
    assert together == alone  # (how many candidates were costed exactly differs: the union of all variants')
    mapper.map_all(ops, accel, objective)
    assert [(found.plan, found.cost) for found in (mapper.map_gemm(op, accel, objective) for op in ops)] == alone
    assert mapper.SEARCHED.searches == len(ops)
