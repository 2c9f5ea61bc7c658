"""Reference mappings: a reference simulator's own tiling, loop order and traffic rules, replayed.

:class:`ReferenceMapper` is a :class:`hwsim.Mapper`: ``hwsim.simulate(workload, accel,
mapper=ReferenceMapper())`` (and ``estimate`` / ``estimate_workload``) maps every GEMM as the preset's
reference simulator does and prices that plan with hwsim's one cost model, the same code that prices
the search mapper's plans, so the model is checked on exactly the reference's mapping
(``benchmarks/fidelity.py``):

* ``bitfusion`` kind: the public BitFusion simulator (:mod:`hwsim.reference.bitfusion`);
* ``systolic`` kind: SCALE-Sim 3.0.0's folds, ports and prefetch windows (:mod:`hwsim.reference.scalesim`).

``mapper_for("search" | "reference")`` names the two for the CLI and scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hwsim.accelerator import Accelerator
from hwsim.errors import HwsimError
from hwsim.mapper import DEFAULT_MAPPER, Mapper
from hwsim.reference import bitfusion, scalesim
from hwsim.reference.plan import LoopNestPlan
from hwsim.workload import Gemm

MAPPINGS = ("search", "reference")
REFERENCES: dict[str, Callable[[Gemm, Accelerator], LoopNestPlan]] = {
    "bitfusion": bitfusion.replay,
    "systolic": scalesim.replay,
}

__all__ = ["MAPPINGS", "REFERENCES", "LoopNestPlan", "ReferenceMapper", "check_reference", "mapper_for"]


def check_reference(accel: Accelerator) -> None:
    """Raise HwsimError when ``accel`` has no reference simulator to replay."""
    if accel.kind not in REFERENCES:
        raise HwsimError(f"accelerator '{accel.name}' (kind {accel.kind}) has no reference mapping; "
                         f"kinds with one: {', '.join(REFERENCES)}; use the search mapping")


@dataclass(frozen=True)
class ReferenceMapper:
    """The preset's reference simulator's own mapping of each GEMM."""

    def plan(self, op: Gemm, accel: Accelerator) -> LoopNestPlan:
        check_reference(accel)
        return REFERENCES[accel.kind](op, accel)


def mapper_for(mapping: str) -> Mapper:
    """The mapper a ``--mapping`` name stands for."""
    if mapping == "search":
        return DEFAULT_MAPPER
    if mapping == "reference":
        return ReferenceMapper()
    raise HwsimError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")
