"""A model as ops (torch-free): the one record size, BOPs, the hwsim workload and the quantizable
components are all read from.

Conventions, the same everywhere PMQ reports them:

- **BOPs** = Σ MACs × b_w × b_a over every GEMM-like op; a float operand counts as
  ``FLOAT_OPERAND_BITS`` = 16 bits, the width a mixed-precision accelerator runs an unquantized layer
  at and the width ``hwsim`` prices it at. ``pmq evaluate``, ``pmq search`` and ``pmq simulate``
  therefore report the same BOPs for the same allocation (HAWQ counts float as 32 bits; halve our
  float-operand figures' factor accordingly to compare).
- **Size** = Σ quantized weights × b_w / 8 + every other parameter (biases, norms, embeddings, class
  token, float weights) at ``FLOAT_PARAM_BITS`` = 32 bits (the stored fp32 checkpoint), in bytes.
- Convolutions are GEMMs by im2col: m = batch × output pixels, k = in-channels/groups × kernel area,
  n = out-channels/groups, ``count`` = groups; :class:`ConvInfo` keeps kernel, stride and channels so
  a native conv op can be emitted once hwsim has one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import hwsim
from pmq.allocation import BitAllocation
from pmq.errors import PMQError

FLOAT_OPERAND_BITS = 16
FLOAT_PARAM_BITS = 32
HW_VECTOR_KIND = {"softmax": "softmax", "norm": "layernorm", "activation": "gelu", "elementwise": "add",
                  "reduce": "add"}
"""Trace vector kinds → the hwsim vector kinds presets state costs for: every normalization is priced as
a LayerNorm, every activation as a GELU (an upper bound for ReLU), elementwise ops and reductions
(pooling, means) as one add per element."""


@dataclass(frozen=True)
class ConvInfo:
    """What an im2col GEMM forgets about a convolution."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    input_hw: tuple[int, ...]


@dataclass(frozen=True)
class TracedGemm:
    """A GEMM-like op: ``count`` × (m × k)·(k × n). ``kind`` is linear, conv or matmul (two activations).

    ``module`` / ``ordinal``: the module path whose call ran it and its place among that call's
    GEMM-like calls (how the quantized wrapper finds it); ``func`` the torch function traced;
    ``weight_params``: elements of the weight (0 for matmul); ``params``: weight + bias."""

    name: str
    kind: str
    m: int
    k: int
    n: int
    count: int
    module: str
    ordinal: int
    func: str
    weight_params: int = 0
    params: int = 0
    conv: ConvInfo | None = None

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


@dataclass(frozen=True)
class TracedVector:
    """A vector-unit op over ``elements`` values: ``kind`` softmax, norm, activation, elementwise or reduce."""

    name: str
    kind: str
    elements: int
    module: str
    func: str


@dataclass(frozen=True)
class ModelTrace:
    """Every op of one forward at ``input_shape`` (batch first), in execution order.

    ``attention``: module path → (batch, tokens, heads, head_dim) of each attention (q·kᵀ, attn·v)
    pair; ``prefix_tokens``: class / distillation tokens before the patches (0 when the model has no
    class token, which patch-wise precision needs)."""

    model: str
    input_shape: tuple[int, ...]
    ops: tuple[TracedGemm | TracedVector, ...]
    params_total: int
    attention: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    prefix_tokens: int = 0
    trace_s: float = 0.0

    @property
    def gemms(self) -> list[TracedGemm]:
        return [op for op in self.ops if isinstance(op, TracedGemm)]

    def components(self) -> dict[str, TracedGemm]:
        """The quantizable components (every GEMM-like op), by name, in forward order."""
        return {op.name: op for op in self.gemms}

    @property
    def component_names(self) -> list[str]:
        return [op.name for op in self.gemms]

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.gemms)

    def _checked(self, allocation: BitAllocation | None) -> BitAllocation:
        if allocation is None:
            return BitAllocation.uniform("float", self.component_names)
        return allocation.validate(self.component_names)

    def size_bytes(self, allocation: BitAllocation | None = None) -> float:
        """Model size in bytes at ``allocation`` (default all float)."""
        allocation = self._checked(allocation)
        quantized = sum(op.weight_params * (allocation[op.name].w or FLOAT_PARAM_BITS) for op in self.gemms)
        rest = self.params_total - sum(op.weight_params for op in self.gemms)
        return (quantized + rest * FLOAT_PARAM_BITS) / 8

    def bops(self, allocation: BitAllocation | None = None) -> int:
        """Σ MACs × b_w × b_a (float = 16 bits), patch-wise token groups included."""
        return sum(op.bops for op in self.workload(allocation).ops)

    def workload(self, allocation: BitAllocation | None = None) -> hwsim.Workload:
        """The hwsim workload at ``allocation``: every GEMM at its component's bits (float → 16), every
        vector op, each depending on the op before; patch-wise settings become grouped GEMMs."""
        allocation = self._checked(allocation)
        ops: list[hwsim.Gemm | hwsim.VectorOp] = []
        for op in self.ops:
            if isinstance(op, TracedGemm):
                bits = allocation[op.name]
                ops.append(hwsim.Gemm(op.name, m=op.m, k=op.k, n=op.n, bits_a=_hw_bits(bits.a),
                                      bits_b=_hw_bits(bits.w), count=op.count,
                                      kind="matmul" if op.kind == "matmul" else "linear"))
            else:
                ops.append(hwsim.VectorOp(op.name, HW_VECTOR_KIND[op.kind], op.elements))
        if allocation.patchwise:
            ops = self._patchwise(ops, allocation)
        workload, previous = hwsim.Workload(), []
        for op in ops:
            workload.add(op, after=previous)
            previous = [op.name]
        return workload

    def check_patchwise(self) -> None:
        """Patch-wise precision ranks patch tokens by the class token's attention: refuse models without one."""
        if not self.prefix_tokens or not self.attention:
            what = "no class token" if self.attention else "no attention layer"
            raise PMQError(f"patch-wise precision needs a ViT with a class token; {self.model} has {what}: "
                           "drop the patch-wise settings for this model")

    def _patchwise(self, ops: list[hwsim.Gemm | hwsim.VectorOp], allocation: BitAllocation) -> list:
        self.check_patchwise()
        # imported here: torch-free callers of plain workloads (sweep workers) never load the patch-wise package
        from pmq.patchwise.hardware import patchwise_ops
        from pmq.patchwise.spec import validate_patchwise

        spec = validate_patchwise(allocation.patchwise, allocation.bits)
        return patchwise_ops(ops, spec, self.attention, self.prefix_tokens, allocation.__getitem__)


def _hw_bits(bits: int | None) -> int:
    return FLOAT_OPERAND_BITS if bits is None else bits


def size_mb(trace: ModelTrace, allocation: BitAllocation | None = None) -> float:
    """Model size in MB (10^6 bytes)."""
    return trace.size_bytes(allocation) / 1e6


def gemm_shape(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(m, k, n, count) of ``a @ b`` with torch.matmul's broadcasting (1-D operands included)."""
    a, b = tuple(a_shape), tuple(b_shape)
    if len(a) == 1:
        a = (1, *a)
    if len(b) == 1:
        b = (*b, 1)
    dims = max(len(a), len(b)) - 2
    batch_a, batch_b = (1,) * (dims - len(a) + 2) + a[:-2], (1,) * (dims - len(b) + 2) + b[:-2]
    batch = [max(x, y) for x, y in zip(batch_a, batch_b, strict=False)]
    return a[-2], a[-1], b[-1], math.prod(batch)


def einsum_shape(equation: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(m, k, n, count) of a two-operand einsum: batch letters in both inputs and the output, k letters
    in both inputs only, m letters in the first input only, n letters in the second only."""
    inputs, _, output = equation.replace(" ", "").partition("->")
    left, right = inputs.split(",")
    sizes = {**dict(zip(left, a_shape, strict=False)), **dict(zip(right, b_shape, strict=False))}
    if "." in equation or not output:
        raise PMQError(f"einsum {equation!r}: give an explicit '->' output without '...' so it can be priced")
    prod = lambda letters: math.prod(sizes[c] for c in letters)  # noqa: E731
    batch = [c for c in left if c in right and c in output]
    reduced = [c for c in left if c in right and c not in output]
    return (prod([c for c in left if c not in right]), prod(reduced),
            prod([c for c in right if c not in left]), prod(batch))

