"""hwsim: a torch-free, tile-level event-driven simulator of mixed-precision DNN accelerators.

Describe work as a :class:`Workload` of :class:`Gemm` / :class:`VectorOp`, load an
:class:`Accelerator` (``accelerators.load``), then ``simulate`` (simpy, per tile) or
``estimate`` / ``estimate_workload`` (closed form, for cost tables); ``area(accel)`` prices its silicon.
"""

from hwsim import errors
from hwsim.accelerator import Accelerator, Buffers, Dram, PEArray, SramEnergy, VectorUnit
from hwsim.area import AreaBreakdown, area
from hwsim.engine import simulate
from hwsim.errors import ConfigError, HwsimError, TileError, UnknownAcceleratorError, WorkloadError
from hwsim.estimate import estimate, estimate_workload
from hwsim.result import OpCost, SimResult
from hwsim.workload import VECTOR_KINDS, Conv2d, Gemm, VectorOp, Workload, register_vector_kind

__all__ = [
    "VECTOR_KINDS",
    "Accelerator",
    "AreaBreakdown",
    "Buffers",
    "ConfigError",
    "Conv2d",
    "Dram",
    "Gemm",
    "HwsimError",
    "OpCost",
    "PEArray",
    "SimResult",
    "SramEnergy",
    "TileError",
    "UnknownAcceleratorError",
    "VectorOp",
    "VectorUnit",
    "Workload",
    "WorkloadError",
    "area",
    "errors",
    "estimate",
    "estimate_workload",
    "register_vector_kind",
    "simulate",
]
