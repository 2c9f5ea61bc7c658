"""Reference mappings: a reference simulator's own tiling, loop order and traffic rules, replayed.

``hwsim.simulate(workload, accel, mapping="reference")`` (and ``estimate`` / ``estimate_workload``)
maps every GEMM as the preset's reference simulator does and prices that plan with hwsim's own
cost model, so the model is checked on exactly the reference's mapping (see ``benchmarks/fidelity.py``):

* ``bitfusion`` kind: the public BitFusion simulator (:mod:`hwsim.reference.bitfusion`);
* ``systolic`` kind: SCALE-Sim 3.0.0's folds (:mod:`hwsim.reference.scalesim`).
"""

from __future__ import annotations

from collections.abc import Callable

from hwsim.accelerator import Accelerator
from hwsim.errors import HwsimError
from hwsim.reference import bitfusion, scalesim
from hwsim.reference.plan import LoopNestPlan, cost, transfers
from hwsim.workload import Gemm

MAPPINGS = ("search", "reference")
REFERENCES: dict[str, Callable[[Gemm, Accelerator], LoopNestPlan]] = {
    "bitfusion": bitfusion.replay,
    "systolic": scalesim.replay,
}

__all__ = ["MAPPINGS", "REFERENCES", "LoopNestPlan", "check_mapping", "cost", "reference_plan", "transfers"]


def check_mapping(mapping: str, accel: Accelerator) -> None:
    """Raise HwsimError for an unknown mapping or a preset with no reference simulator."""
    if mapping not in MAPPINGS:
        raise HwsimError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")
    if mapping == "reference" and accel.kind not in REFERENCES:
        raise HwsimError(f"accelerator '{accel.name}' (kind {accel.kind}) has no reference mapping; "
                         f"kinds with one: {', '.join(REFERENCES)}; use mapping='search'")


def reference_plan(op: Gemm, accel: Accelerator) -> LoopNestPlan:
    check_mapping("reference", accel)
    return REFERENCES[accel.kind](op, accel)
