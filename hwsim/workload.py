"""Workload graph: GEMM and vector ops in a networkx DAG, plus SCALE-Sim GEMM topology CSV I/O."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from hwsim.errors import WorkloadError
from hwsim.files import atomic_write_text

MIN_BITS, MAX_BITS = 1, 16
MAX_OUT_BITS = 32  # outputs may leave at accumulator width (e.g. 32-bit partial sums)
GEMM_KINDS = ("linear", "matmul")


@dataclass(frozen=True)
class VectorKind:
    """A vector-unit operation type; ``inputs`` is how many tensors of ``elements`` it reads."""

    name: str
    inputs: int = 1


VECTOR_KINDS: dict[str, VectorKind] = {}


def register_vector_kind(name: str, inputs: int = 1) -> VectorKind:
    """Add a vector op type (accelerators then need ``vector.cycles_per_element.<name>``)."""
    kind = VectorKind(name, inputs)
    VECTOR_KINDS[name] = kind
    return kind


for _name, _inputs in (("softmax", 1), ("layernorm", 1), ("gelu", 1), ("add", 2),
                       ("token_score", 1), ("regroup", 1)):
    register_vector_kind(_name, _inputs)
# token_score: rank tokens by importance (average a score row over heads, then a top-k selection);
# regroup: gather token rows into bit groups and requantize each row at its group's bits.

Groups = tuple[tuple[int, int], ...]
"""Token groups of a GEMM operand: ``((size, bits), ...)``, sizes summing to the split dimension."""


def _check_bits(name: str, field: str, bits: int, maximum: int = MAX_BITS) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= maximum:
        raise WorkloadError(
            f"op '{name}': {field} must be an integer in {MIN_BITS}..{maximum}, got {bits!r}; "
            f"map float tensors to 16 bits"
        )


def _check_groups(name: str, field: str, groups, dim: str, size: int) -> Groups:
    """Groups as a tuple of (size, bits) pairs, each size positive, bits in range, sizes summing to ``size``."""
    try:
        pairs = tuple((rows, bits) for rows, bits in groups)
    except (TypeError, ValueError):
        raise WorkloadError(f"op '{name}': {field} must be a sequence of (size, bits) pairs, got {groups!r}") from None
    for rows, bits in pairs:
        _check_positive(name, f"{field} size", rows)
        _check_bits(name, f"{field} bits", bits)
    if pairs and sum(rows for rows, _ in pairs) != size:
        raise WorkloadError(f"op '{name}': {field} sizes {[rows for rows, _ in pairs]} sum to "
                            f"{sum(rows for rows, _ in pairs)}, not {dim}={size}; they must cover {dim} exactly")
    return pairs


def _check_positive(name: str, field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"op '{name}': {field} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Conv2d:
    """Where a GEMM comes from when it is a convolution (im2col view: ``m = batch·out_h·out_w``,
    ``k = kernel_h·kernel_w·in_channels``, ``n = out_channels``).

    Reference mappings need the geometry: BitFusion's simulator runs a convolution channel by
    channel (``kernel_h·kernel_w`` products of ``out_h·out_w × in_channels × out_channels``) unless
    it is a first layer (``first_layer``: im2col), and its input tiles carry the stride halo.
    """

    kernel_h: int
    kernel_w: int
    stride: int
    out_h: int
    out_w: int
    in_channels: int
    batch: int = 1
    first_layer: bool = False

    def __post_init__(self) -> None:
        for field in ("kernel_h", "kernel_w", "stride", "out_h", "out_w", "in_channels", "batch"):
            _check_positive("conv", field, getattr(self, field))

    def gemm_dims(self, out_channels: int) -> tuple[int, int, int]:
        """(m, k, n) of the im2col GEMM."""
        return (self.batch * self.out_h * self.out_w, self.kernel_h * self.kernel_w * self.in_channels,
                out_channels)


@dataclass(frozen=True)
class Gemm:
    """``out[m×n] = A[m×k] @ B[k×n]``, ``count`` identical independent instances.

    A holds activations (``bits_a``); B holds weights for ``kind="linear"`` and a second
    activation tensor for ``kind="matmul"`` (q·kᵀ, attn·v). ``bits_out`` is the width the
    output is written back to DRAM at (default: ``bits_a``, i.e. the next op reads at the
    same activation precision).

    Patch-wise precision: ``row_groups`` splits A's rows (tokens) into groups with their own
    activation bits; ``col_groups`` splits B's columns (the key tokens of q·kᵀ) and
    ``depth_groups`` B's rows (the value tokens of attn·v, the reduction) by their own bits.
    A grouped GEMM runs as the sub-GEMMs of :meth:`parts` (one per group combination, each at
    its own throughput, one after another); depth groups also add their partial outputs on the
    vector unit (:meth:`merge_op`). ``bits_a``/``bits_b`` stay the nominal (ungrouped) widths.
    """

    name: str
    m: int
    k: int
    n: int
    bits_a: int
    bits_b: int
    count: int = 1
    kind: str = "linear"
    bits_out: int | None = None
    row_groups: Groups = ()
    col_groups: Groups = ()
    depth_groups: Groups = ()
    conv: Conv2d | None = None

    def __post_init__(self) -> None:
        for field in ("m", "k", "n", "count"):
            _check_positive(self.name, field, getattr(self, field))
        if self.conv is not None and self.conv.gemm_dims(self.n) != (self.m, self.k, self.n):
            raise WorkloadError(f"op '{self.name}': conv geometry gives the GEMM {self.conv.gemm_dims(self.n)}, "
                                f"not (m, k, n) = {(self.m, self.k, self.n)}; build it with Gemm.from_conv")
        _check_bits(self.name, "bits_a", self.bits_a)
        _check_bits(self.name, "bits_b", self.bits_b)
        if self.bits_out is not None:
            _check_bits(self.name, "bits_out", self.bits_out, MAX_OUT_BITS)
        if self.kind not in GEMM_KINDS:
            raise WorkloadError(f"op '{self.name}': kind must be one of {GEMM_KINDS}, got {self.kind!r}")
        for field, dim in (("row_groups", "m"), ("col_groups", "n"), ("depth_groups", "k")):
            object.__setattr__(self, field, _check_groups(self.name, field, getattr(self, field), dim,
                                                          getattr(self, dim)))
        if self.col_groups and self.depth_groups:
            raise WorkloadError(f"op '{self.name}': give B's token groups as col_groups (q·kᵀ) or depth_groups "
                                "(attn·v), not both")

    @classmethod
    def from_conv(cls, name: str, conv: Conv2d, out_channels: int, bits_a: int, bits_b: int, **kwargs) -> Gemm:
        """The im2col GEMM of a convolution, keeping its geometry for reference mappings."""
        m, k, n = conv.gemm_dims(out_channels)
        return cls(name, m, k, n, bits_a, bits_b, conv=conv, **kwargs)

    @property
    def out_bits(self) -> int:
        return self.bits_a if self.bits_out is None else self.bits_out

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count

    @property
    def grouped(self) -> bool:
        return bool(self.row_groups or self.col_groups or self.depth_groups)

    def parts(self) -> list[Gemm]:
        """The sub-GEMMs a grouped GEMM runs as (``[self]`` when it has no groups)."""
        if not self.grouped:
            return [self]
        rows = self.row_groups or ((self.m, self.bits_a),)
        if self.depth_groups:  # B's token groups run along the reduction
            b_groups = [(k, self.n, bits) for k, bits in self.depth_groups]
        else:  # along the columns (or B is not grouped)
            b_groups = [(self.k, n, bits) for n, bits in (self.col_groups or ((self.n, self.bits_b),))]
        parts = []
        for m, bits_a in rows:
            for k, n, bits_b in b_groups:
                parts.append(Gemm(f"{self.name}[{m}x{k}x{n} a{bits_a} b{bits_b}]", m, k, n, bits_a, bits_b,
                                  self.count, self.kind, self.out_bits))
        return parts

    def merge_op(self) -> VectorOp | None:
        """Depth groups leave one partial output per group: the vector unit adds them (``None`` if none)."""
        if len(self.depth_groups) < 2:
            return None
        elements = (len(self.depth_groups) - 1) * self.m * self.n * self.count
        return VectorOp(f"{self.name}.merge", "add", elements, self.out_bits)

    @property
    def bops(self) -> int:
        return sum(part.macs * part.bits_a * part.bits_b for part in self.parts())


@dataclass(frozen=True)
class VectorOp:
    """An elementwise/row-wise op on the vector unit over ``elements`` values of ``bits`` each.

    ``groups`` (patch-wise): ``((elements, bits), ...)`` summing to ``elements``, the bits each part's
    output rows are requantized to (e.g. softmax rows of demoted tokens); only a preset with a sub-word
    vector unit (``tokens.subword_vector``) prices them, at their own width."""

    name: str
    kind: str
    elements: int
    bits: int = 8
    groups: Groups = ()

    def __post_init__(self) -> None:
        if self.kind not in VECTOR_KINDS:
            raise WorkloadError(
                f"op '{self.name}': unknown vector kind {self.kind!r}; use one of {sorted(VECTOR_KINDS)} "
                f"or hwsim.register_vector_kind"
            )
        _check_positive(self.name, "elements", self.elements)
        _check_bits(self.name, "bits", self.bits)
        object.__setattr__(self, "groups", _check_groups(self.name, "groups", self.groups, "elements", self.elements))

    @property
    def macs(self) -> int:
        return 0

    @property
    def bops(self) -> int:
        return 0


Op = Gemm | VectorOp


class Workload:
    """A DAG of ops (networkx.DiGraph; node = op name, attribute ``op``); insertion order breaks ties."""

    def __init__(self) -> None:
        self.graph = nx.DiGraph()
        self._order: dict[str, int] = {}

    def add(self, op: Op, after: list[str] | tuple[str, ...] = ()) -> Op:
        if not isinstance(op, Gemm | VectorOp):
            raise WorkloadError(f"Workload.add takes a hwsim.Gemm or hwsim.VectorOp, got {type(op).__name__}")
        if op.name in self.graph:
            raise WorkloadError(f"op '{op.name}' is already in the workload; op names must be unique")
        for pred in after:
            if pred not in self.graph:
                raise WorkloadError(f"op '{op.name}': predecessor '{pred}' is not in the workload; add it first")
        self.graph.add_node(op.name, op=op)
        self._order[op.name] = len(self._order)
        for pred in after:
            self.graph.add_edge(pred, op.name)
        return op

    @property
    def ops(self) -> list[Op]:
        """Ops in topological order (stable: among ready ops, the earliest added first)."""
        names = nx.lexicographical_topological_sort(self.graph, key=self._order.__getitem__)
        return [self.graph.nodes[name]["op"] for name in names]

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __iter__(self):
        return iter(self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @classmethod
    def from_topology_csv(cls, path: str | os.PathLike, bits_a: int = 8, bits_b: int = 8) -> Workload:
        """Read a SCALE-Sim topology: GEMM (``-i gemm``: ``Layer,M,N,K,``) or convolution
        (``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,
        Strides,``), told apart by the header.

        SCALE-Sim 3.0.0 reads a GEMM row as an M×K input (ifmap) multiplied by N filters of
        K elements each, so M = output rows (tokens), N = output columns (filters), K = the
        reduction: ``Gemm(m=M, k=K, n=N)``. A convolution row becomes its im2col GEMM with valid
        padding, as SCALE-Sim maps it (``out = ceil((H − R + S) / S)``), with the geometry kept in
        ``Gemm.conv``. Extra columns (SCALE-Sim's sparsity ratio) are ignored. Ops are chained in
        file order.
        """
        path = Path(path)
        if not path.is_file():
            raise WorkloadError(f"topology '{path}': no such file; pass a SCALE-Sim GEMM CSV (Layer,M,N,K,) "
                                "or convolution CSV (Layer name, IFMAP Height, ..., Strides,)")
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
        except UnicodeDecodeError as err:
            raise WorkloadError(f"topology '{path}': not UTF-8 text (byte {err.start}: {err.reason}); "
                                "save it as UTF-8") from None
        conv = bool(rows) and len(rows[0]) > 1 and "ifmap" in rows[0][1].strip().lower()
        need, form = (8, CONV_COLUMNS) if conv else (4, "Layer,M,N,K")
        workload = cls()
        previous: list[str] = []
        for line_no, row in enumerate(rows[1:], start=2):
            cells = [cell.strip() for cell in row]
            if len(cells) < need:
                raise WorkloadError(f"topology '{path}' line {line_no}: expected {form}, got {row}")
            try:
                values = [int(cell) for cell in cells[1:need]]
            except ValueError:
                raise WorkloadError(
                    f"topology '{path}' line {line_no}: {form.split(',', 1)[1]} must be integers, got {cells[1:need]}"
                ) from None
            if conv:
                op = _conv_row(cells[0], values, bits_a, bits_b, f"topology '{path}' line {line_no}")
            else:
                m, n, k = values
                op = Gemm(cells[0], m=m, k=k, n=n, bits_a=bits_a, bits_b=bits_b)
            workload.add(op, after=previous)
            previous = [op.name]
        if not len(workload):
            raise WorkloadError(f"topology '{path}': no layers; expected a header then rows Layer,M,N,K, "
                                f"or {CONV_COLUMNS}")
        return workload

    def to_topology_csv(self, path: str | os.PathLike) -> Path:
        """Write the GEMMs as a SCALE-Sim GEMM topology (instances of ``count`` > 1 as rows ``name#i``,
        grouped GEMMs as their sub-GEMMs)."""
        lines = ["Layer, M, N, K,"]
        for op in self.ops:
            if isinstance(op, Gemm):
                for part in op.parts():
                    names = [part.name] if part.count == 1 else [f"{part.name}#{i}" for i in range(part.count)]
                    lines += [f"{name}, {part.m}, {part.n}, {part.k}," for name in names]
        return atomic_write_text(path, "\n".join(lines) + "\n")


CONV_COLUMNS = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"


def _conv_row(name: str, values: list[int], bits_a: int, bits_b: int, where: str) -> Gemm:
    """A SCALE-Sim convolution row as its valid-padding im2col GEMM."""
    height, width, filter_h, filter_w, channels, filters, stride = values
    if filter_h > height or filter_w > width or min(values) < 1:
        raise WorkloadError(f"{where}: sizes must be positive and the filter ({filter_h}x{filter_w}) no larger "
                            f"than the input ({height}x{width})")
    out_h, out_w = -(-(height - filter_h + stride) // stride), -(-(width - filter_w + stride) // stride)
    conv = Conv2d(filter_h, filter_w, stride, out_h, out_w, channels)
    return Gemm.from_conv(name, conv, filters, bits_a, bits_b)
