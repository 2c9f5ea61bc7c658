"""hwsim: a torch-free, tile-level event-driven simulator of mixed-precision DNN accelerators.

Describe work as a :class:`Workload` of :class:`Gemm` / :class:`VectorOp`, load an
:class:`Accelerator` (``accelerators.load``), then ``simulate`` (simpy, per tile) or
``estimate`` / ``estimate_workload`` (closed form, for cost tables); ``area(accel)`` prices its silicon.
Each GEMM runs the plan a :class:`Mapper` picks (default :class:`SearchMapper`, see :mod:`hwsim.mapper`).
"""

from hwsim import errors
from hwsim.accelerator import Accelerator, Buffers, Dram, Memory, PEArray, SramEnergy, VectorUnit
from hwsim.area import AreaBreakdown, area
from hwsim.cost import cost_plan
from hwsim.engine import simulate
from hwsim.errors import ConfigError, HwsimError, TileError, UnknownAcceleratorError, WorkloadError
from hwsim.estimate import estimate, estimate_workload
from hwsim.mapper import OBJECTIVES, Mapper, Mapping, SearchMapper, make_plan, map_gemm
from hwsim.plan import GemmPlan
from hwsim.result import OpCost, SimResult
from hwsim.workload import VECTOR_KINDS, Gemm, VectorOp, Workload, register_vector_kind

__all__ = [
    "VECTOR_KINDS",
    "Accelerator",
    "AreaBreakdown",
    "Buffers",
    "ConfigError",
    "Dram",
    "Gemm",
    "GemmPlan",
    "HwsimError",
    "Mapper",
    "Mapping",
    "Memory",
    "OBJECTIVES",
    "OpCost",
    "PEArray",
    "SearchMapper",
    "SimResult",
    "SramEnergy",
    "TileError",
    "UnknownAcceleratorError",
    "VectorOp",
    "VectorUnit",
    "Workload",
    "WorkloadError",
    "area",
    "cost_plan",
    "errors",
    "estimate",
    "estimate_workload",
    "make_plan",
    "map_gemm",
    "register_vector_kind",
    "simulate",
]
