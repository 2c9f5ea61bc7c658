"""Cost tables: every GEMM of a workload at every bit pair, and the whole workload at any allocation.

A mixed-precision search prices each component at each (activation, weight) bit pair; a co-design
sweep does so for thousands of accelerators. Two facts make most of those prices repeats:

* transformers repeat a handful of GEMM shapes (DeiT-S: 74 components, 8 shapes);
* an array tells bits apart only so far (:meth:`hwsim.PEArray.precision_key`: BitFusion runs 3 bits
  as 4; an INT8 array runs 2..8 bits alike) and memory stores them at a few widths.

So the mapper searches once per class of ``(shape, storage widths, precision key)``; the other
members of a class take its row with their own bits and BOPs (nothing else of a row depends on
them), and :meth:`VariantTable.result` assembles a whole-model :class:`SimResult` from rows without
pricing anything again. Every number is the one ``hwsim.estimate`` gives for the same op (the tests
check equality, not closeness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hwsim.accelerator import Accelerator
from hwsim.estimate import estimate
from hwsim.mapper import map_all, widths
from hwsim.result import OpCost, SimResult
from hwsim.workload import Gemm, Op, Workload

BitPair = tuple[int, int]  # (bits_a, bits_b) of a GEMM variant


@dataclass(frozen=True)
class VariantTable:
    """``rows[name][pair]``: the cost of component GEMM ``name`` at ``pair``; ``fixed``: every other op.

    Rows are shared between components of the same shape and bits, so a row's ``name`` is the
    first such component's; :meth:`cost` and :meth:`result` give rows under their own names.
    """

    accelerator: Accelerator
    workload: Workload
    rows: dict[str, dict[BitPair, OpCost]]
    fixed: dict[str, OpCost]

    def cost(self, name: str, pair: BitPair) -> OpCost:
        row = self.rows[name][pair]
        return row if row.name == name else dataclasses.replace(row, name=name)

    def result(self, bits: Mapping[str, BitPair]) -> SimResult:
        """The whole workload with each component at ``bits[name]`` (others as recorded): the same
        :class:`SimResult` as ``estimate_workload`` of that workload."""
        ops = [self.cost(op.name, bits[op.name]) if op.name in self.rows else self.fixed[op.name]
               for op in self.workload.ops]
        return SimResult(self.accelerator, ops, method="estimate")


@lru_cache(maxsize=4096)
def variant(op: Gemm, pair: BitPair) -> Gemm:
    """``op`` at ``pair`` (cached: a sweep prices the same variants on every design)."""
    return dataclasses.replace(op, bits_a=pair[0], bits_b=pair[1])


@lru_cache(maxsize=64)
def _fields(kind: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(kind) if field.name != "name")


def variant_table(workload: Workload, components: Iterable[str], pairs: Sequence[BitPair],
                  accelerator: Accelerator) -> VariantTable:
    """Price each named component GEMM at every pair and every other op once, each distinct op once."""
    components = set(components)
    priced: dict[tuple, OpCost] = {}

    def key(op: Op) -> tuple:
        if not isinstance(op, Gemm) or op.grouped:  # vector ops, patch-wise groups: priced as they are
            return ((type(op), *(getattr(op, name) for name in _fields(type(op)))),)  # all but its name
        return op.m, op.k, op.n, op.count, op.kind, widths(op, accelerator), accelerator.array.precision_key(op)

    def price(op: Op, known: tuple) -> OpCost:
        if known not in priced:
            priced[known] = estimate(op, accelerator)
        row = priced[known]
        if len(known) == 1 or (row.bits_a, row.bits_b) == (op.bits_a, op.bits_b):
            return row
        return dataclasses.replace(row, bits_a=op.bits_a, bits_b=op.bits_b, bops=op.bops)

    ops = workload.ops
    shape_of = {op.name: dataclasses.replace(op, name="_") for op in ops
                if isinstance(op, Gemm) and op.name in components}
    shapes: dict[Gemm, dict[BitPair, Gemm]] = {}  # components equal but for their name share one row dict
    for op in ops:
        shape = shape_of.get(op.name)
        if shape is not None and shape not in shapes:
            shapes[shape] = {pair: variant(op, pair) for pair in pairs}
    keys = {op: key(op) for group in shapes.values() for op in group.values()}
    first_of_class = {known: op for op, known in reversed(keys.items())}
    map_all([op for op in first_of_class.values() if len(keys[op]) > 1], accelerator)  # all searches at once
    priced_shapes = {shape: {pair: price(op, keys[op]) for pair, op in group.items()}
                     for shape, group in shapes.items()}
    rows = {name: priced_shapes[shape] for name, shape in shape_of.items()}
    fixed = {op.name: dataclasses.replace(price(op, key(op)), name=op.name)
             for op in ops if op.name not in shape_of}
    return VariantTable(accelerator, workload, rows, fixed)
