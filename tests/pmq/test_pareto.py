"""The Pareto frontier against brute force and an ILP, budgets, parsing, validation and files."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest

from pmq.budget import Budget
from pmq.errors import PMQError
from pmq.pareto import Choice, Frontier, frontier, uniform_cost

BITS = (2, 3, 4, 6, 8)


# ----------------------------------------------------------------------------- references


def enumerate_allocations(table, objectives):
    """Every allocation as (choice indices (N, L), Ω (N,), costs (N, m)), sums left to right in
    component order, the same float order as ``sum()`` over the allocation."""
    rows = list(table.values())
    index = np.array(list(itertools.product(*[range(len(r)) for r in rows])), dtype=np.int64)
    omega = np.zeros(len(index))
    costs = np.zeros((len(index), len(objectives)))
    for t, choices in enumerate(rows):
        omega = omega + np.array([c.omega for c in choices])[index[:, t]]
        for j, obj in enumerate(objectives):
            costs[:, j] = costs[:, j] + np.array([c.costs[obj] for c in choices])[index[:, t]]
    return index, omega, costs


def brute_frontier(table, objectives):
    """Set of non-dominated (costs..., Ω) tuples, by comparing every pair of distinct value vectors."""
    _, omega, costs = enumerate_allocations(table, objectives)
    values = np.unique(np.column_stack([costs, omega]), axis=0)
    keep = []
    for v in values:
        no_worse = (values <= v).all(axis=1)
        better = (values < v).any(axis=1)
        if not (no_worse & better).any():
            keep.append(tuple(v))
    return sorted(keep)


def ilp_best_under(table, objective, budget):
    """Least total Ω with total ``objective`` cost ≤ budget, as an exact MIP solved by HiGHS.

    One binary per (component, choice), one "pick exactly one" row per component and one budget
    row.  Returns (Ω, allocation) with both recomputed from the chosen keys.  Reusable on any
    table of :class:`pmq.pareto.Choice` lists.
    """
    import highspy

    names = list(table)
    flat = [(name, c) for name in names for c in table[name]]
    n = len(flat)
    scale = max(budget, 1.0)  # a budget row of order 1 keeps HiGHS' absolute tolerances meaningful
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.addCols(
        n, np.array([c.omega for _, c in flat]), np.zeros(n), np.ones(n), 0, np.array([], np.int32),
        np.array([], np.int32), np.array([], np.float64),
    )  # fmt: skip
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.ones(n, dtype=np.uint8))
    start = 0
    for name in names:
        k = len(table[name])
        h.addRow(1.0, 1.0, k, np.arange(start, start + k, dtype=np.int32), np.ones(k))
        start += k
    h.addRow(-math.inf, budget / scale, n, np.arange(n, dtype=np.int32),
             np.array([c.costs[objective] / scale for _, c in flat]))  # fmt: skip
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    x = np.asarray(h.getSolution().col_value)
    picked = {name: c for (name, c), v in zip(flat, x, strict=True) if v > 0.5}
    allocation = {name: picked[name].key for name in names}
    return sum(picked[name].omega for name in names), allocation


# ----------------------------------------------------------------------------- instances


def random_table(rng, *, components=8, choices=4, objectives=("a", "b"), integer=False, max_allocations=4096):
    """Random table; small integers make many exact ties, floats make distinct sums."""
    while True:
        counts = rng.integers(1, choices + 1, size=rng.integers(1, components + 1))
        if np.prod(counts) <= max_allocations:
            break
    table = {}
    for t, k in enumerate(counts):
        rows = []
        for j in range(k):
            values = (
                rng.integers(0, 6, size=1 + len(objectives)) if integer else rng.random(1 + len(objectives))
            )
            rows.append(
                Choice(
                    (t, j),
                    float(values[0]),
                    {o: float(v) for o, v in zip(objectives, values[1:], strict=True)},
                )
            )
        table[f"c{t}"] = rows
    return table


def deit_like_table(blocks=2, seed=0):
    """DeiT-S shapes (tokens 197, dim 384, mlp 1536, 6 heads × 64), 25 (w, a) pairs per component,
    Ω = α·4^-w + β·4^-a with random per-component α, β; costs size (bytes) and BOPs."""
    rng = np.random.default_rng(seed)
    tokens, dim, mlp, heads, head_dim = 197, 384, 1536, 6, 64
    shapes = {"patch_embed.proj": (768 * dim, 196 * 768 * dim)}
    for b in range(blocks):
        shapes[f"blocks.{b}.attn.qkv"] = (dim * 3 * dim, tokens * dim * 3 * dim)
        shapes[f"blocks.{b}.attn.matmul_qk"] = (0, heads * tokens * tokens * head_dim)
        shapes[f"blocks.{b}.attn.matmul_av"] = (0, heads * tokens * tokens * head_dim)
        shapes[f"blocks.{b}.attn.proj"] = (dim * dim, tokens * dim * dim)
        shapes[f"blocks.{b}.mlp.fc1"] = (dim * mlp, tokens * dim * mlp)
        shapes[f"blocks.{b}.mlp.fc2"] = (mlp * dim, tokens * mlp * dim)
    shapes["head"] = (dim * 1000, dim * 1000)
    table = {}
    for name, (params, macs) in shapes.items():
        alpha, beta = rng.lognormal(0.0, 1.0, size=2)
        table[name] = [
            Choice(
                (w, a),
                alpha * 4.0**-w + beta * 4.0**-a,
                {"size": params * w / 8, "bops": float(macs * w * a)},
            )
            for w in BITS
            for a in BITS
        ]
    return table


def resum(table, allocation, objectives):
    """(Ω, costs) of an allocation, summed left to right in component order."""
    picked = [next(c for c in table[name] if c.key == allocation[name]) for name in table]
    return sum(c.omega for c in picked), tuple(sum(c.costs[o] for c in picked) for o in objectives)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("objectives", [("a",), ("a", "b")], ids=["2d", "3d"])
@pytest.mark.parametrize("integer", [False, True], ids=["float", "ties"])
def test_frontier_equals_brute_force(objectives, integer):
    rng = np.random.default_rng(len(objectives) * 10 + integer)
    for _ in range(25):
        table = random_table(rng, objectives=objectives, integer=integer)
        result = frontier(table, objectives)
        got = sorted((*p.costs, p.omega) for p in result.points)
        assert got == brute_frontier(table, objectives)
        for p in result.points:  # every point is a real allocation with exactly these sums
            assert resum(table, p.allocation, objectives) == (p.omega, p.costs)


def test_points_sorted_by_cost_with_falling_omega():
    result = frontier(deit_like_table(blocks=1), ("bops",))
    assert np.all(np.diff(result.costs[:, 0]) > 0)
    assert np.all(np.diff(result.omega) < 0)
    assert result.choices.shape == (len(result), len(result.components))


def test_ties_broken_by_table_order():
    # both choices of "x" give identical sums: the one listed first is kept, every time
    table = {"x": [Choice("first", 1.0, 2.0), Choice("second", 1.0, 2.0)], "y": [Choice("only", 0.5, 1.0)]}
    for _ in range(3):
        (point,) = frontier(table).points
        assert point.allocation == {"x": "first", "y": "only"}


@pytest.mark.parametrize("objectives", [("a",), ("a", "b")], ids=["2d", "3d"])
def test_best_under_equals_brute_force(objectives):
    rng = np.random.default_rng(7)
    for _ in range(25):
        table = random_table(rng, objectives=objectives, integer=bool(rng.integers(2)))
        result = frontier(table, objectives)
        _, omega, costs = enumerate_allocations(table, objectives)
        for _ in range(5):
            budget = {
                o: float(rng.uniform(costs[:, j].min(), costs[:, j].max())) for j, o in enumerate(objectives)
            }
            if len(objectives) == 1:
                budget = rng.choice([budget["a"], costs[:, 0].min(), costs[:, 0].max()])
                limits = np.array([budget])
            else:
                limits = np.array([budget[o] for o in objectives])
            ok = (costs <= limits).all(axis=1)
            if not ok.any():
                with pytest.raises(PMQError, match="no allocation has"):
                    result.best_under(budget)
                continue
            best = result.best_under(budget)
            assert best.omega == omega[ok].min()
            assert all(c <= limit for c, limit in zip(best.costs, limits, strict=True))


def test_third_objective_does_not_change_best_under_a_single_budget():
    table = deit_like_table(blocks=1, seed=3)
    flat, deep = frontier(table, ("bops",)), frontier(table, ("bops", "size"))
    for budget in np.linspace(flat.cost_min[0], flat.cost_max[0], 7):
        assert deep.best_under(budget).omega == flat.best_under(budget).omega


def test_best_under_equals_ilp_optimum_on_realistic_table():
    table = deit_like_table(blocks=2, seed=1)
    result = frontier(table, ("bops",))
    lo, hi = result.cost_min[0], result.cost_max[0]
    for fraction in (0.12, 0.25, 0.4, 0.6, 0.85):  # spans roughly 2- to 8-bit-equivalent budgets
        budget = lo + fraction * (hi - lo)
        best = result.best_under(budget)
        ilp_omega, ilp_allocation = ilp_best_under(table, "bops", budget)
        assert resum(table, ilp_allocation, ("bops",))[1][0] <= budget * (1 + 1e-9)
        assert best.omega == pytest.approx(ilp_omega, rel=1e-9, abs=1e-12)
        assert best.cost <= budget


def test_resolution_keeps_its_guarantee():
    rng = np.random.default_rng(11)
    table = random_table(rng, components=8, choices=4, objectives=("a",), max_allocations=65536)
    exact = frontier(table, ("a",))
    rough = frontier(table, ("a",), resolution=0.05)
    assert len(rough) <= len(exact) and rough.resolution == 0.05
    slack = 0.05 * exact.cost_max[0]
    for omega, cost in zip(exact.omega, exact.costs[:, 0], strict=True):
        assert ((rough.omega <= omega) & (rough.costs[:, 0] <= cost + slack)).any()
    for p in rough.points:
        assert resum(table, p.allocation, ("a",)) == (p.omega, p.costs)


# ----------------------------------------------------------------------------- budgets


@pytest.fixture
def small() -> Frontier:
    table = {
        "a": [Choice("lo", 4.0, 1.0), Choice("hi", 1.0, 3.0)],
        "b": [Choice("lo", 2.0, 2.0), Choice("hi", 0.5, 5.0)],
    }
    return frontier(table)


def test_budget_range_errors_give_the_feasible_range(small):
    assert (small.cost_min, small.cost_max) == ((3.0,), (8.0,))
    with pytest.raises(
        PMQError, match=r"budget 2\.5 is below the cheapest allocation \(3\): use a budget in \[3, 8\]"
    ):
        small.best_under(2.5)
    with pytest.raises(
        PMQError, match=r"budget 9 is above the dearest allocation \(8\).*use a budget in \[3, 8\]"
    ):
        small.best_under(9)
    assert small.best_under(3).allocation == {"a": "lo", "b": "lo"}
    assert small.best_under(8).allocation == {"a": "hi", "b": "hi"}
    # below 8 the best is a: hi + b: lo (Ω 3, cost 5); a: lo + b: hi (Ω 4.5, cost 6) is dominated
    assert small.best_under(7.9).allocation == {"a": "hi", "b": "lo"}


def test_budget_errors_for_bad_values_and_names(small):
    with pytest.raises(PMQError, match="not a number"):
        small.best_under(float("nan"))
    with pytest.raises(PMQError, match="objectives"):
        small.best_under({"latency": 5.0})


def test_budget_at_dearest_uniform_setting_survives_rounding():
    table = deit_like_table(blocks=1)
    result = frontier(table, ("bops",))
    dearest = uniform_cost(table, (8, 8), "bops")
    assert dearest == result.cost_max[0]
    assert result.best_under(Budget.parse("1x:W8A8").resolve(lambda s: dearest)).allocation["head"] == (8, 8)
    # a budget one part in 1e14 over the dearest (summed in another order) is still accepted
    result.best_under(dearest * (1 + 1e-14))


def test_uniform_cost_needs_the_key_everywhere():
    table = {"a": [Choice((8, 8), 0.0, 5.0)], "b": [Choice((4, 4), 0.0, 1.0)]}
    with pytest.raises(PMQError, match="component 'b' has no choice"):
        uniform_cost(table, (8, 8))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "empty"),
        ({"blocks.0.attn.qkv": []}, "'blocks.0.attn.qkv' has no choices"),
        ({"fc": [Choice(4, -1.0, 1.0)]}, "'fc' choice 4: sensitivity -1.0 must be finite and >= 0"),
        ({"fc": [Choice(4, float("nan"), 1.0)]}, "'fc' choice 4: sensitivity nan"),
        ({"fc": [Choice(4, 1.0, float("nan"))]}, "'fc' choice 4: cost cost nan"),
        ({"fc": [Choice(4, 1.0, -2.0)]}, "'fc' choice 4: cost cost -2.0"),
        ({"fc": [Choice(4, 1.0, {"size": 1.0})]}, "'fc' choice 4 has no 'cost' cost"),
        ({"fc": [Choice(4, 1.0, 1.0), Choice(4, 2.0, 0.5)]}, "'fc' lists a key twice"),
        ({"fc": [("k", 1.0)]}, "not a Choice"),
    ],
)
def test_bad_tables_name_the_component(table, message):
    with pytest.raises(PMQError, match=message.replace("(", r"\(")):
        frontier(table)


def test_bad_objectives_and_options():
    table = {"fc": [Choice(4, 1.0, {"a": 1.0, "b": 2.0, "c": 3.0})]}
    for objectives in [(), ("a", "b", "c"), ("a", "a")]:
        with pytest.raises(PMQError, match="one or two distinct"):
            frontier(table, objectives)
    with pytest.raises(PMQError, match="resolution"):
        frontier(table, "a", resolution=2.0)
    big = deit_like_table(blocks=1)
    with pytest.raises(PMQError, match="pass a resolution"):
        frontier(big, ("bops",), max_states=1000)


def test_tuple_choices_are_accepted():
    result = frontier({"fc": [("lo", 2.0, 1.0), ("hi", 1.0, 4.0)]})
    assert [p.allocation["fc"] for p in result.points] == ["lo", "hi"]


# ----------------------------------------------------------------------------- files


def test_csv_and_json_round_trip(tmp_path, small):
    csv_path = small.to_csv(tmp_path / "out" / "frontier.csv")
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["omega", "cost", "a", "b"]
    assert [float(r[1]) for r in rows[1:]] == small.costs[:, 0].tolist()
    assert rows[1][2:] == ["lo", "lo"]  # string keys as they are, others as JSON text
    table = {"fc": [Choice((4, 8), 1.0, {"size": 3.0, "bops": 2.0})]}
    deep = frontier(table, ("size", "bops"))
    data = json.loads(deep.to_json(tmp_path / "f.json", extra={"model": "demo"}).read_text())
    assert data["model"] == "demo"
    assert data["cost_range"] == {"size": [3.0, 3.0], "bops": [2.0, 2.0]}
    assert data["points"] == [
        {"omega": 1.0, "costs": {"size": 3.0, "bops": 2.0}, "allocation": {"fc": [4, 8]}}
    ]
    assert list(csv.reader(deep.to_csv(tmp_path / "f.csv").open()))[1][3] == "[4,8]"
    assert not list(tmp_path.glob("**/.*.tmp"))
