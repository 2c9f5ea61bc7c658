"""The cost-table path prices every variant exactly as hwsim.estimate does, and whole models as estimate_workload."""

import dataclasses
import random

import pytest

import accelerators
import hwsim
from hwsim.costtable import variant_table

from .conftest import deit_small_workload

BITS = (2, 3, 4, 6, 8)
PAIRS = [(a, b) for a in BITS for b in BITS]


@pytest.mark.parametrize("name", ["bitfusion", "int8_systolic", "stripes", "loom"])
def test_every_entry_and_every_whole_model_equals_estimate(name):
    workload = deit_small_workload(depth=2)
    components = [op.name for op in workload.ops if isinstance(op, hwsim.Gemm) and op.name != "head"]
    accel = accelerators.load(name)
    table = variant_table(workload, components, PAIRS, accel)
    for op in workload.ops:
        if op.name in components:
            for pair in PAIRS:
                variant = dataclasses.replace(op, bits_a=pair[0], bits_b=pair[1])
                assert table.cost(op.name, pair) == hwsim.estimate(variant, accel)
        else:
            assert table.fixed[op.name] == hwsim.estimate(op, accel)
    rng = random.Random(0)
    for _ in range(3):
        bits = {name: rng.choice(PAIRS) for name in components}
        again = hwsim.Workload()
        for op in workload.ops:
            if op.name in bits:
                op = dataclasses.replace(op, bits_a=bits[op.name][0], bits_b=bits[op.name][1])
            again.add(op, after=list(workload.graph.predecessors(op.name)))
        whole, reference = table.result(bits), hwsim.estimate_workload(again, accel)
        assert whole.ops == reference.ops
        assert (whole.cycles, whole.energy_pj, whole.latency_s, whole.utilization) == (
            reference.cycles, reference.energy_pj, reference.latency_s, reference.utilization)


def test_repeated_shapes_and_equivalent_bits_are_searched_once():
    from hwsim import mapper

    workload = deit_small_workload(depth=12)
    components = [op.name for op in workload.ops if isinstance(op, hwsim.Gemm)]
    accel = accelerators.load("bitfusion")
    mapper.SEARCHED.clear()
    variant_table(workload, components, PAIRS, accel)
    # DeiT-S has 8 GEMM shapes; BitFusion runs 2/3/4/6/8 bits as bricks of 2, 4, 4, 8, 8 (3 widths per operand)
    assert len(components) == 74 and mapper.SEARCHED.searches == 8 * 3 * 3
