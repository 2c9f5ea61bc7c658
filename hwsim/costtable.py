"""Cost tables: every GEMM of a workload at every bit pair, and the whole workload at any allocation.

A mixed-precision search prices each component at each (activation, weight) bit pair; a co-design
sweep does so for thousands of accelerators. Transformers repeat a handful of GEMM shapes (DeiT-S:
74 components, 8 shapes), so the table is built from the distinct ``(shape, bits)`` ops only,
each priced once, and :meth:`VariantTable.result` assembles a whole-model :class:`SimResult` from
the table's rows without pricing anything again. Every number is the one ``hwsim.estimate`` gives
for the same op (the tests check equality, not closeness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hwsim.accelerator import Accelerator
from hwsim.estimate import estimate
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


def variant(op: Gemm, pair: BitPair) -> Gemm:
    return dataclasses.replace(op, bits_a=pair[0], bits_b=pair[1])


def variant_table(workload: Workload, components: Iterable[str], pairs: Sequence[BitPair],
                  accelerator: Accelerator) -> VariantTable:
    """Price each named component GEMM at every pair and every other op once, each distinct op once."""
    components = set(components)
    priced: dict[Op, OpCost] = {}

    def price(op: Op) -> OpCost:
        key = dataclasses.replace(op, name="_")
        if key not in priced:
            priced[key] = estimate(op, accelerator)
        return priced[key]

    rows: dict[str, dict[BitPair, OpCost]] = {}
    fixed: dict[str, OpCost] = {}
    for op in workload.ops:
        if isinstance(op, Gemm) and op.name in components:
            rows[op.name] = {pair: price(variant(op, pair)) for pair in pairs}
        else:
            fixed[op.name] = dataclasses.replace(price(op), name=op.name)
    return VariantTable(accelerator, workload, rows, fixed)
