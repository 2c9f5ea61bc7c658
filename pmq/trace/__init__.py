"""One tracer: a model becomes ops (GEMM-like and vector), named by module path.

    trace = trace_model(model)                    # one forward; trace.ops, trace.component_names
    trace.size_bytes(allocation), trace.bops(allocation), trace.workload(allocation)  # hwsim.Workload

:mod:`pmq.trace.graph` holds the torch-free record (what sweep workers receive), :mod:`pmq.trace.tracer`
the torch side, :mod:`pmq.trace.scope` the module-path stack shared with the quantized wrapper.
"""

from pmq.trace.graph import (
    FLOAT_OPERAND_BITS,
    FLOAT_PARAM_BITS,
    ConvInfo,
    ModelTrace,
    TracedGemm,
    TracedVector,
    size_mb,
)

_TRACER = ("input_size_of", "trace_model")


def __getattr__(name: str):
    """The tracer needs torch: imported on first use, so the record stays importable torch-free."""
    if name in _TRACER:
        from pmq.trace import tracer

        return getattr(tracer, name)
    raise AttributeError(f"module 'pmq.trace' has no attribute {name!r}")


__all__ = ["FLOAT_OPERAND_BITS", "FLOAT_PARAM_BITS", "ConvInfo", "ModelTrace", "TracedGemm", "TracedVector",
           "input_size_of", "size_mb", "trace_model"]
