"""Exact Pareto frontier of (total sensitivity Ω, total cost) over per-component bit choices.

Each component (``blocks.3.attn.qkv``, ...) offers a few choices (a ``(w_bits, a_bits)`` pair, a
patch-wise setting, ... -- keys are opaque); each choice has a sensitivity Ω ≥ 0 and one or more
additive costs (bytes, BOPs, cycles, pJ).  An allocation picks one choice per component; its Ω and
costs are the sums over components.  We want every allocation that no other beats on all of
(Ω, cost) -- or (Ω, cost₁, cost₂) for a 3-D frontier -- and then the best one under a budget.

Algorithm (the HAWQ/ZeroQ idea, made exact): dynamic programming over components in table order.
The state set after component ``t`` is the non-dominated set of partial sums over components
``0..t``; merging component ``t+1`` forms all (state + choice) sums and prunes the dominated ones.
Pruning is exact because costs are additive: if partial sum ``s'`` dominates ``s``, every completion
of ``s`` is dominated by the same completion of ``s'``.  Each state keeps a back-pointer (parent
state, choice) so the allocations are rebuilt at the end.  Per stage the work is a sort of
``|states| × |choices|`` sums, so the total is ``O(Σ_t |F_t|·k_t·log)``, where ``|F_t|`` is the
frontier size after ``t`` components (bounded by the number of distinct partial cost sums, which is
small when costs share structure, as sizes and BOPs do).  2-D pruning is one sort plus a running
minimum; 3-D pruning is a block-wise staircase sweep (numpy over blocks of points).

Floats: sums are formed left to right in component order (``((0 + v₀) + v₁) + …``), the same as
``sum()`` over the allocation, and compared exactly -- no tolerance enters dominance, so the result
is the exact frontier of those floating-point sums.  Allocations whose (Ω, costs) are identical
are one frontier point; the one kept is fixed by table order (at the last component where two such
partial allocations differ, the choice listed first wins), so results are reproducible.  Budgets are
compared with a relative slack of ``BUDGET_RTOL`` so that a budget computed by summing the same
costs in another order (``1x:W8A8``) still admits that allocation.

``resolution`` (off by default) trades exactness for speed when float costs (simulated latency or
energy) make the frontier huge: after each stage only the least-Ω state per cost cell of width
``q = resolution · C_max / n_components`` is kept (``C_max``: cost of the dearest allocation, per
objective).  Guarantee: for every exact frontier point there is a returned allocation with Ω no
larger and each cost at most ``resolution · C_max`` larger; returned points are real allocations
with their exact sums, but one of them may be dominated by an allocation that was dropped.

Sizes, for scale (DeiT-S, 74 components × 25 pairs, benchmarks/pareto_speed.py): the exact 2-D
frontier has ~10³ points for size and ~10⁴–10⁵ for BOPs or float latency, built in under a second.
A 3-D frontier is a surface, so it grows roughly with the square: (size, BOPs) over 36 components
already has ~2·10⁵ points; over all 74 it passes 10⁶, and no per-stage resolution fine enough to
keep the guarantee useful shrinks it much.  Use 3-D on parts of a model, or 2-D plus a budget.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pmq.errors import PMQError
from pmq.io import write_json, write_text

DEFAULT_OBJECTIVE = "cost"
BUDGET_RTOL = 1e-12  # well above float rounding of a ~100-term sum (~1e-14), far below any real budget step
MAX_STATES = 20_000_000  # partial allocations held at one stage before we ask for a resolution
_BLOCK = 256  # rows per chunk of the 3-D sweep (pairwise work is at most (2·_BLOCK)² per chunk)


@dataclass(frozen=True)
class Choice:
    """One option for one component: an opaque key, its sensitivity Ω and its additive costs.

    ``costs`` maps objective names to costs (``{"size": 1.2e6, "bops": 3.4e9}``); a bare number
    means ``{"cost": number}``, the default objective of :func:`frontier`.
    """

    key: Hashable
    omega: float
    costs: float | Mapping[str, float]

    def __post_init__(self) -> None:
        if not isinstance(self.costs, Mapping):
            object.__setattr__(self, "costs", {DEFAULT_OBJECTIVE: self.costs})

    def cost(self, objective: str = DEFAULT_OBJECTIVE) -> float:
        return self.costs[objective]  # type: ignore[index]


# component name -> its choices; iteration order is the component order (a dict keeps it).
# A choice may also be given as a tuple ``(key, omega, costs)``.
Table = Mapping[str, Sequence["Choice | tuple[Hashable, float, float | Mapping[str, float]]"]]


@dataclass(frozen=True)
class FrontierPoint:
    """One Pareto-optimal allocation: its total Ω, its total costs (in objective order) and the
    choice key for every component."""

    omega: float
    costs: tuple[float, ...]
    allocation: dict[str, Hashable]

    @property
    def cost(self) -> float:
        """The first objective's cost (the only one on a 2-D frontier)."""
        return self.costs[0]


@dataclass(frozen=True, eq=False)
class Frontier:
    """The frontier as arrays (row ``i`` is point ``i``), sorted by costs then Ω.

    On a 2-D frontier cost rises and Ω falls strictly from row to row.  ``choices[i, t]`` is the
    index, in the table's list for ``components[t]``, of the choice point ``i`` makes there;
    ``keys[t]`` lists that component's keys.  ``cost_min``/``cost_max`` are the costs of the
    cheapest and dearest allocations per objective: the range a budget must lie in.
    """

    objectives: tuple[str, ...]
    components: tuple[str, ...]
    omega: np.ndarray
    costs: np.ndarray
    choices: np.ndarray
    keys: tuple[tuple[Hashable, ...], ...]
    cost_min: tuple[float, ...]
    cost_max: tuple[float, ...]
    resolution: float | None = None

    def __len__(self) -> int:
        return len(self.omega)

    def __getitem__(self, i: int) -> FrontierPoint:
        row = self.choices[i]
        return FrontierPoint(
            omega=float(self.omega[i]),
            costs=tuple(float(c) for c in self.costs[i]),
            allocation={name: self.keys[t][row[t]] for t, name in enumerate(self.components)},
        )

    @cached_property
    def points(self) -> tuple[FrontierPoint, ...]:
        return tuple(self[i] for i in range(len(self)))

    def best_under(self, budget: float | Mapping[str, float]) -> FrontierPoint:
        """The allocation with least Ω whose cost is within ``budget``.

        A number budgets the first objective; a mapping budgets any of the objectives by name.
        Ties in Ω go to the cheaper point.  A budget outside [cheapest, dearest] is an error that
        states the feasible range.
        """
        limits = self._limits(budget)
        if len(self.objectives) == 1:
            # cost ascending, Ω strictly descending: the answer is the last affordable point
            i = int(np.searchsorted(self.costs[:, 0], limits[0], side="right")) - 1
            return self[i]  # i >= 0: the cheapest allocation is on the frontier and within range
        ok = np.ones(len(self), dtype=bool)
        for j, limit in limits.items():
            ok &= self.costs[:, j] <= limit
        if not ok.any():
            wanted = ", ".join(f"{self.objectives[j]} <= {_num(b)}" for j, b in self._budgets(budget).items())
            raise PMQError(f"no allocation has {wanted} at once: raise one of these budgets")
        candidates = np.flatnonzero(ok)
        # rows are sorted by costs, so the first row with the least Ω is also the cheapest such
        return self[int(candidates[np.argmin(self.omega[candidates])])]

    def _budgets(self, budget: float | Mapping[str, float]) -> dict[int, float]:
        if not isinstance(budget, Mapping):
            return {0: budget}
        unknown = [name for name in budget if name not in self.objectives]
        if unknown or not budget:
            raise PMQError(
                f"budget names {sorted(map(str, unknown)) or 'no objective'}: "
                f"budget one or more of this frontier's objectives {list(self.objectives)}"
            )
        return {self.objectives.index(name): value for name, value in budget.items()}

    def _limits(self, budget: float | Mapping[str, float]) -> dict[int, float]:
        limits = {}
        for j, value in self._budgets(budget).items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or math.isnan(value):
                raise PMQError(
                    f"budget {value!r} is not a number: give the {self.objectives[j]} budget as a number"
                )
            lo, hi = self.cost_min[j], self.cost_max[j]
            name = self.objectives[j]
            span = f"use a budget in [{_num(lo)}, {_num(hi)}]"
            if value < lo - BUDGET_RTOL * abs(lo):
                raise PMQError(
                    f"{name} budget {_num(value)} is below the cheapest allocation ({_num(lo)}): {span}"
                )
            if value > hi + BUDGET_RTOL * abs(hi):
                raise PMQError(
                    f"{name} budget {_num(value)} is above the dearest allocation ({_num(hi)}), "
                    f"which already fits, so it selects nothing: {span}"
                )
            limits[j] = value + BUDGET_RTOL * abs(value)
        return limits

    def to_rows(self, key_format: Callable[[Hashable], str] | None = None) -> list[list[str]]:
        """Header plus one row per point: ``omega, <objectives...>, <component keys...>``."""
        fmt = key_format or _key_text
        rows = [["omega", *self.objectives, *self.components]]
        for i in range(len(self)):
            row = self.choices[i]
            rows.append(
                [repr(float(self.omega[i])), *(repr(float(c)) for c in self.costs[i])]
                + [fmt(self.keys[t][row[t]]) for t in range(len(self.components))]
            )
        return rows

    def to_csv(self, path: str | Path, key_format: Callable[[Hashable], str] | None = None) -> Path:
        """Write the frontier as CSV (atomically); keys are JSON text unless ``key_format`` is given."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(self.to_rows(key_format))
        return write_text(path, buffer.getvalue())

    def as_dict(self) -> dict[str, Any]:
        return {
            "objectives": list(self.objectives),
            "components": list(self.components),
            "resolution": self.resolution,
            "cost_range": {
                name: [self.cost_min[j], self.cost_max[j]] for j, name in enumerate(self.objectives)
            },
            "points": [
                {
                    "omega": p.omega,
                    "costs": dict(zip(self.objectives, p.costs, strict=True)),
                    "allocation": {name: _jsonable(key) for name, key in p.allocation.items()},
                }
                for p in self.points
            ],
        }

    def to_json(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write :meth:`as_dict` (plus ``extra``, e.g. provenance) as JSON, atomically."""
        return write_json(path, {**self.as_dict(), **(extra or {})})


def frontier(
    table: Table,
    objectives: Sequence[str] = (DEFAULT_OBJECTIVE,),
    *,
    resolution: float | None = None,
    max_states: int = MAX_STATES,
    admit: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Frontier:
    """The exact Pareto frontier of (Σ Ω, Σ cost) -- or (Σ Ω, Σ cost₁, Σ cost₂) for two objectives.

    ``resolution`` (relative cost quantum, e.g. ``1e-4``) makes it approximate but bounded; see the
    module docstring for the guarantee.  An exact run whose partial frontier outgrows ``max_states``
    stops with an error that suggests a resolution.  ``admit(t, omega, costs)`` sees the partial sums
    of the states kept after component ``t`` and masks those worth extending: a caller that asks only
    a few budgets drops the states no completion could make their answer (the frontier is then cut to
    the points those budgets need; :func:`pmq.sweep.pricing.budget_admit`).
    """
    objectives = _check_objectives(objectives)
    names, keys, omegas, costs = _compile(table, objectives)
    m = len(objectives)
    cost_min = tuple(_left_sum(c[:, j].min() for c in costs) for j in range(m))
    cost_max = tuple(_left_sum(c[:, j].max() for c in costs) for j in range(m))
    if resolution is not None:
        if not (isinstance(resolution, (int, float)) and 0 < resolution < 1):
            raise PMQError(f"resolution {resolution!r} is not in (0, 1): use e.g. 1e-4, or None for exact")
        quanta = np.array([resolution * hi / len(names) for hi in cost_max])
        quanta[quanta <= 0] = math.inf  # an objective that is all zeros has one cell
    else:
        quanta = None

    # drop choices dominated within their own component: exact, and it shrinks every merge
    kept_choice = [_prune(o, c) for o, c in zip(omegas, costs, strict=True)]
    state_omega = np.zeros(1)
    state_costs = np.zeros((1, m))
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    for t, keep in enumerate(kept_choice):
        c_omega, c_costs = omegas[t][keep], costs[t][keep]
        n, k = len(state_omega), len(keep)
        if n * k > max_states:
            raise PMQError(
                f"the exact frontier needs {n * k} partial allocations at component {names[t]!r} "
                f"(limit {max_states}): pass a resolution (e.g. 1e-3) for a bounded approximation, "
                "or search fewer components or objectives"
            )
        # row j*n + i is state i extended by choice j: concatenation order sets the tie-break
        merged_omega = (state_omega[None, :] + c_omega[:, None]).ravel()
        merged_costs = (state_costs[None, :, :] + c_costs[:, None, :]).reshape(n * k, m)
        survivors = _prune(merged_omega, merged_costs)
        if quanta is not None:
            survivors = _coarsen(survivors, merged_omega, merged_costs, quanta)
        if admit is not None:
            survivors = survivors[admit(t, merged_omega[survivors], merged_costs[survivors])]
        parents.append((survivors % n).astype(np.int32))
        picks.append(keep[survivors // n].astype(np.int32))
        state_omega, state_costs = merged_omega[survivors], merged_costs[survivors]

    order = np.lexsort((state_omega, *state_costs.T[::-1]))
    state_omega, state_costs = state_omega[order], state_costs[order]
    chosen = np.empty((len(order), len(names)), dtype=np.int32)
    at = order
    for t in range(len(names) - 1, -1, -1):
        chosen[:, t] = picks[t][at]
        at = parents[t][at]
    return Frontier(
        objectives=objectives,
        components=names,
        omega=state_omega,
        costs=state_costs,
        choices=chosen,
        keys=keys,
        cost_min=cost_min,
        cost_max=cost_max,
        resolution=resolution,
    )


def uniform_cost(table: Table, key: Hashable, objective: str = DEFAULT_OBJECTIVE) -> float:
    """Total ``objective`` cost of choosing ``key`` in every component (summed in table order)."""
    total = 0.0
    for name, choices in table.items():
        for choice in choices:
            choice = _as_choice(choice)
            if choice.key == key:
                costs = choice.costs
                if objective not in costs:  # type: ignore[operator]
                    raise PMQError(
                        f"component {name!r} choice {key!r} has no {objective!r} cost: "
                        f"use one of {sorted(costs)}"  # type: ignore[arg-type]
                    )
                total += float(costs[objective])  # type: ignore[index]
                break
        else:
            raise PMQError(
                f"component {name!r} has no choice {key!r}, so the uniform setting is undefined: "
                "use a setting every component offers"
            )
    return total


def _check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    objectives = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    if not 1 <= len(objectives) <= 2 or len(set(objectives)) != len(objectives):
        raise PMQError(
            f"objectives {list(objectives)} must be one or two distinct cost names (2-D or 3-D frontier)"
        )
    return objectives


def _as_choice(choice: Any) -> Choice:
    if isinstance(choice, Choice):
        return choice
    if isinstance(choice, tuple) and len(choice) == 3:
        return Choice(*choice)
    raise PMQError(f"choice {choice!r} is not a Choice or a (key, omega, costs) tuple")


def _compile(
    table: Table, objectives: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[tuple[Hashable, ...], ...], list[np.ndarray], list[np.ndarray]]:
    """Validate the table and turn it into per-component arrays (Ω: (k,), costs: (k, m))."""
    if not isinstance(table, Mapping) or not table:
        raise PMQError("the cost table is empty: give at least one component with its choices")
    names, keys, omegas, costs = [], [], [], []
    for name, choices in table.items():
        choices = [_as_choice(c) for c in choices]
        if not choices:
            raise PMQError(f"component {name!r} has no choices: give it at least one (key, omega, costs)")
        seen = [c.key for c in choices]
        if len(set(seen)) != len(seen):
            raise PMQError(
                f"component {name!r} lists a key twice ({seen}): keys must be unique per component"
            )
        row_omega, row_costs = [], []
        for c in choices:
            row_omega.append(_value(c.omega, name, c.key, "sensitivity"))
            missing = [o for o in objectives if o not in c.costs]  # type: ignore[operator]
            if missing:
                raise PMQError(
                    f"component {name!r} choice {c.key!r} has no {missing[0]!r} cost: "
                    f"its costs are {sorted(c.costs)}"  # type: ignore[arg-type]
                )
            row_costs.append([_value(c.costs[o], name, c.key, f"{o} cost") for o in objectives])  # type: ignore[index]
        names.append(name)
        keys.append(tuple(seen))
        omegas.append(np.array(row_omega, dtype=np.float64))
        costs.append(np.array(row_costs, dtype=np.float64).reshape(len(choices), len(objectives)))
    return tuple(names), tuple(keys), omegas, costs


def _value(x: Any, name: str, key: Hashable, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise PMQError(f"component {name!r} choice {key!r}: {what} {x!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise PMQError(f"component {name!r} choice {key!r}: {what} {x!r} must be finite and >= 0")
    return v


def _left_sum(values: Any) -> float:
    total = 0.0
    for v in values:
        total += float(v)
    return total


def _prune(omega: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of (omega, costs); of identical rows the first is kept."""
    if costs.shape[1] == 1:
        return _prune_2d(omega, costs[:, 0])
    return _prune_3d(omega, costs[:, 0], costs[:, 1])


def _prune_2d(omega: np.ndarray, cost: np.ndarray) -> np.ndarray:
    if len(cost) == 0:
        return np.empty(0, dtype=np.intp)
    order = np.argsort(cost, kind="stable")
    o = omega[order]
    # a row survives if its Ω beats every row sorted before it (those are no dearer)
    better = np.empty(len(o), dtype=bool)
    better[0] = True
    np.less(o[1:], np.minimum.accumulate(o)[:-1], out=better[1:])
    idx = order[better]
    # equal-cost survivors have falling Ω, so only the last of each equal-cost run is undominated
    c = cost[idx]
    last = np.empty(len(idx), dtype=bool)
    last[-1] = True
    np.not_equal(c[:-1], c[1:], out=last[:-1])
    return idx[last]


def _prune_3d(omega: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Non-dominated rows of (c1, c2, Ω): a sweep in c1 order.

    Rows of smaller c1 are summarised by their (c2, Ω) staircase and queried by binary search.
    The sweep goes in chunks cut at c1 boundaries: a chunk that is one equal-c1 group needs only
    a 2-D prune; a chunk of several small groups (≤ 2·_BLOCK rows) is compared pairwise.
    Integer-like costs (sizes, BOPs) give few large equal-c1 groups; float costs give many small
    groups bundled into chunks.  The input is usually k cost-sorted runs (shifted copies of the
    previous frontier), which a stable sort merges in O(n log k).
    """
    order = np.argsort(c1, kind="stable")  # stable: identical rows stay in concatenation order
    a1, a2, ao = c1[order], c2[order], omega[order]
    n = len(order)
    group_start = np.flatnonzero(np.r_[True, a1[1:] != a1[:-1]])
    group_size = np.diff(np.r_[group_start, n])
    # a chunk is one big equal-c1 group, or the small groups starting in one _BLOCK-row window
    window = np.where(group_size > _BLOCK, -1 - np.arange(len(group_start)), group_start // _BLOCK)
    bounds = np.r_[group_start[np.r_[True, window[1:] != window[:-1]]], n]
    alive = np.zeros(n, dtype=bool)
    stair_c2 = np.empty(0)
    stair_omega = np.empty(0)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        b1, b2, bo = a1[lo:hi], a2[lo:hi], ao[lo:hi]
        if len(stair_c2):
            at = np.searchsorted(stair_c2, b2, side="right") - 1
            candidates = np.flatnonzero((at < 0) | (stair_omega[np.maximum(at, 0)] > bo))
        else:
            candidates = np.arange(hi - lo)
        # a row dominated inside the chunk is dominated by a candidate too (transitivity)
        if b1[0] == b1[-1]:
            survivors = candidates[_prune_2d(bo[candidates], b2[candidates])]
        else:
            rows = candidates[np.lexsort((bo[candidates], b2[candidates], b1[candidates]))]
            # after the lexicographic sort any dominator (or an identical row) comes earlier
            r2, ro = b2[rows], bo[rows]
            pair = np.triu((r2[:, None] <= r2[None, :]) & (ro[:, None] <= ro[None, :]), 1)
            survivors = rows[~pair.any(axis=0)]
        alive[lo + survivors] = True
        # the (c2, Ω) staircase so far: c2 ascending, Ω strictly falling
        stair_c2, stair_omega = np.r_[stair_c2, b2[survivors]], np.r_[stair_omega, bo[survivors]]
        stair = _prune_2d(stair_omega, stair_c2)
        stair_c2, stair_omega = stair_c2[stair], stair_omega[stair]
    return order[alive]


def _coarsen(rows: np.ndarray, omega: np.ndarray, costs: np.ndarray, quanta: np.ndarray) -> np.ndarray:
    """Of ``rows``, keep the least-Ω one per cost cell (cell = floor(cost / quantum) per objective)."""
    cells = np.floor(costs[rows] / quanta).T  # (m, len(rows)); an infinite quantum gives one cell
    order = np.lexsort((omega[rows], *cells[::-1]))
    c = cells[:, order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (c[:, 1:] != c[:, :-1]).any(axis=0)
    return rows[order[first]]


def _num(x: float) -> str:
    """Shortest text that reads back as the same float, so a printed bound can be pasted back."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)


def _jsonable(key: Any) -> Any:
    if isinstance(key, (tuple, list)):
        return [_jsonable(k) for k in key]
    if isinstance(key, np.generic):
        return key.item()
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    return str(key)


def _key_text(key: Hashable) -> str:
    return key if isinstance(key, str) else json.dumps(_jsonable(key), separators=(",", ":"))
