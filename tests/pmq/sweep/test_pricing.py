"""The sweep's budget-cut search: for the budgets a sweep asks, exactly the full frontier's answers."""

from __future__ import annotations

import numpy as np
import pytest

from pmq.errors import PMQError
from pmq.search import CostTable, SearchProblem, bit_pairs
from pmq.sweep.pricing import budget_problem

BUDGETS = ("1x:W8A8", "0.9x:W8A8", "0.75x:W8A8", "0.6x:W8A8", "0.5x:W8A8", "0.4x:W8A8", "0.3x:W8A8", "0.1x:W8A8")


def random_problem(rng: np.random.Generator, components: int, integer: bool):
    """Ω and latency per component and bit pair, shaped like a model's (fewer bits: more Ω, less cost);
    integer costs and Ω make many allocations tie, so the tie-break is exercised too."""
    pairs = bit_pairs((2, 4, 8))
    omega, latency = {}, {}
    for t in range(components):
        name = f"blocks.{t}.fc"
        size = rng.uniform(0.5, 3.0)
        noise = rng.uniform(0.8, 1.2, len(pairs))
        cost = [size * (b.w * b.a / 64) ** 0.6 * n for b, n in zip(pairs, noise, strict=True)]
        sensitivity = [size * (2.0 ** -b.w + 2.0 ** -b.a) * n for b, n in zip(pairs, noise[::-1], strict=True)]
        if integer:
            cost, sensitivity = np.round(np.array(cost) * 4), np.round(np.array(sensitivity) * 8)
        latency[name] = {b: float(c) for b, c in zip(pairs, cost, strict=True)}
        omega[name] = {b: float(s) for b, s in zip(pairs, sensitivity, strict=True)}
    return omega, CostTable({"latency": latency}, {"latency": float(rng.uniform(0, 5))})


def answers(problem: SearchProblem, budgets) -> list:
    """Each budget's chosen point (Ω, cost, allocation), or its error line."""
    out = []
    for budget in budgets:
        try:
            point = problem.point(budget)
        except PMQError as err:
            out.append(str(err))
        else:
            out.append((point.omega, point.costs, point.allocation))
    return out


@pytest.mark.parametrize("integer", [False, True], ids=["float", "ties"])
def test_budget_problem_chooses_what_the_full_frontier_chooses(integer):
    rng = np.random.default_rng(5 + integer)
    cut_smaller = 0
    for _ in range(12):
        omega, costs = random_problem(rng, components=int(rng.integers(3, 14)), integer=integer)
        lo, hi = costs.feasible_range("latency")
        budgets = [*BUDGETS, *(float(v) for v in rng.uniform(lo, hi, 3)), lo, hi]
        full = SearchProblem.build(omega, costs, ["latency"])
        cut = budget_problem(omega, costs, "latency", budgets)
        expected = answers(full, budgets)
        assert answers(cut, budgets) == expected
        assert any(not isinstance(a, str) for a in expected)  # not only failures
        cut_smaller += len(cut.frontier) < len(full.frontier)
    assert cut_smaller >= 6  # the point of it: most frontiers are cut


def test_budget_problem_with_no_feasible_budget_fails_each_like_the_full_search():
    omega, costs = random_problem(np.random.default_rng(0), components=4, integer=False)
    budgets = ["0.01x:W8A8", "100x:W8A8"]
    full = SearchProblem.build(omega, costs, ["latency"])
    cut = budget_problem(omega, costs, "latency", budgets)
    assert answers(cut, budgets) == answers(full, budgets)
    assert all("below the cheapest" in a or "above the dearest" in a for a in answers(cut, budgets))
