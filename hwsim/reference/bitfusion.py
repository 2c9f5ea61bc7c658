"""BitFusion's public simulator's mapping, re-implemented: its tile search, loop orders and traffic rules.

The simulator (hsharma35/bitfusion, ``optimizer.py``) maps every layer as a convolution: a GEMM
``M×K×N`` is a 1×1 convolution with batch ``M``, ``IC = K`` input and ``OC = N`` output channels.
It tiles five loops (batch ``b``, output width/height ``ow = oh``, ``ic``, ``oc``) with power-of-two
tile sizes (``oc`` in multiples of the array's 32 columns, except for first layers), tries every
order of the five loops, and keeps the fastest by its own closed form (ties: least energy). Its
traffic rules, reproduced here:

* tile footprints at the operand's own width (1-bit stored at 1 bit), outputs as **32-bit** partial
  sums; each must fit half its buffer (double buffering);
* walking the loops from the innermost out, a tensor's block grows along the loops that index it
  while it still fits half its buffer (then it is reused across the loops that do not index it);
  from the first loop where it no longer fits, every outer loop re-fetches it;
* the output block is loaded *and* stored at 32 bits as often as that rule says, so when the ``ic``
  loop sits outside the output's reuse, partial sums travel to DRAM and back once per ``ic`` tile;
  even an unsplit reduction loads the (32-bit) output once;
* a convolution that is not a first layer runs channel by channel (``K·K`` positions of an
  ``OH·OW × IC × OC`` product, the input channels padded to the array per position); first layers
  use im2col; edge tiles are charged as full tiles;
* time: ``compute + max(0, middle transfers − compute) + first loads + last stores`` at the DRAM
  interface width.

``BitFusionMapping`` keeps the chosen tiling and its traffic; :mod:`hwsim.reference.replay` turns
it into the plan hwsim's own cost model prices.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from functools import lru_cache

from hwsim.accelerator import Accelerator, ceil_div
from hwsim.errors import HwsimError
from hwsim.reference.plan import Loop, LoopNestPlan, TensorTiles
from hwsim.workload import Conv2d, Gemm

LOOPS = ("b", "ow", "oh", "ic", "oc")
TIE = 1e-12  # relative: energies equal up to float summation order
TENSORS = ("act", "wgt", "out")
# The order optimizer.optimize_for_order visits loop orders in: CPython 2.7 iterating
# set(itertools.permutations(loops)) (b = B/b, w = OW/ow, h = OH/oh, i = IC/ic, o = OC/oc; its string
# hashes are not randomised, so the order is fixed). Tilings of equal cycles and energy under
# different orders go to the first order in it, so an exact replay needs it.
_ORDER_WORDS = """
oibhw bowih hbwoi biowh obwih oihbw hwoib ohbwi ohibw whibo ihobw boiwh hwiob oiwhb bihow obiwh boihw owbih iowbh wihbo
wohbi oiwbh hbiwo ihwbo wbohi howbi whiob bohiw bwohi biwoh whbio ibohw hbowi wiboh hibwo ohbiw bwhoi bwhio bhwio bwoih
wboih iobhw hwibo oibwh hiobw hiowb ihbow obhwi biwho iwobh obhiw iowhb hoiwb bohwi ihowb hiwbo hbiow ibwoh whobi owhib
hwobi iwhob wbhoi whoib wiobh oihwb hiwob iobwh iwboh ohwib wobih iohbw wbiho owhbi ibwho hbwio biohw iohwb ibowh bhoiw
wiohb hibow hwboi hoibw ihbwo ohiwb hobwi bihwo wbhio iwohb owibh obihw woihb wihob wohib hboiw hobiw bhiwo owbhi ibhwo
iwbho ihwob bhwoi wobhi bwiho wbioh owihb ibhow hwbio whboi obwhi howib woibh bhiow bwioh bhowi wibho bowhi iwhbo ohwbi
"""
_LOOP_OF = {"b": "b", "w": "ow", "h": "oh", "i": "ic", "o": "oc"}
SIMULATOR_ORDERS = tuple(tuple(_LOOP_OF[c] for c in word) for word in _ORDER_WORDS.split())
INDEXES = {  # which tensors each tile loop walks through
    "b": ("act", "out"),
    "ow": ("act", "out"),
    "oh": ("act", "out"),
    "ic": ("act", "wgt"),
    "oc": ("wgt", "out"),
}


@dataclass(frozen=True)
class ConvShape:
    """A layer as the simulator sees it: ``K×K`` kernel, ``O×O`` output, stride, channels, batch, bits."""

    k: int
    o: int
    s: int
    ic: int
    oc: int
    batch: int
    a_bits: int
    w_bits: int
    im2col: bool = False

    @classmethod
    def gemm(cls, m: int, k: int, n: int, a_bits: int, w_bits: int) -> ConvShape:
        """How the simulator runs a fully-connected layer: batch ``m``, ``IC = k``, ``OC = n``."""
        return cls(1, 1, 1, k, n, m, a_bits, w_bits)


@dataclass(frozen=True)
class BitFusionArch:
    """The simulator's configuration (``bf_e_conf.ini`` keys) plus the energy it ranks ties by."""

    rows: int  # a: Fusion Units along the reduction
    cols: int  # c: Fusion Units along output channels
    buffer_bits: dict  # act / wgt / out capacity in bits
    if_width: int  # DRAM interface, bits per cycle
    pmax: int = 8
    pmin: int = 2
    psum_bits: int = 32
    core_pj_per_cycle: float = 0.0
    read_pj: tuple = (0.0, 0.0, 0.0)  # per bit, act / wgt / out
    write_pj: tuple = (0.0, 0.0, 0.0)
    dram_pj: float = 0.0

    @classmethod
    def from_accelerator(cls, accel: Accelerator) -> BitFusionArch:
        """The arch of a ``bitfusion``-kind preset (``memory.psum_bits`` is the width psums move at)."""
        buffers, energy = accel.buffers, accel.sram_energy
        names = {"act": "ifmap", "wgt": "filter", "out": "ofmap"}
        return cls(
            rows=accel.config["array"]["rows"],
            cols=accel.config["array"]["cols"],
            buffer_bits={t: buffers.bits(names[t]) for t in TENSORS},
            if_width=int(accel.dram.bandwidth_bits_per_cycle),
            psum_bits=accel.memory.psum_bits,
            core_pj_per_cycle=accel.config["energy"]["mac"]["array_pj_per_cycle"],
            read_pj=tuple(energy.read_pj_per_bit[names[t]] for t in TENSORS),
            write_pj=tuple(energy.write_pj_per_bit[names[t]] for t in TENSORS),
            dram_pj=accel.dram.energy_pj_per_bit,
        )

    def __hash__(self) -> int:
        return hash((self.rows, self.cols, tuple(sorted(self.buffer_bits.items())), self.if_width, self.psum_bits))

    def perf_factor(self, a_bits: int, w_bits: int) -> int:
        return (self.pmax // max(a_bits, self.pmin)) * (self.pmax // max(w_bits, self.pmin))


@dataclass(frozen=True)
class BitFusionMapping:
    """The tiling the simulator picks for one layer and what it moves (all bits, all tiles)."""

    shape: ConvShape
    order: tuple[str, ...]  # outermost first
    counts: dict  # loop -> number of tiles
    sizes: dict  # loop -> tile size
    loads: dict  # tensor -> DRAM bits read into its buffer (out: 32-bit partial sums)
    stores: int  # DRAM bits written (32-bit outputs)
    tile_bits: dict  # tensor -> one tile's footprint
    first_bits: int  # bits of the first loads, not overlapped with compute
    last_bits: int  # bits of the last stores
    compute_cycles: int
    cycles: int
    energy_pj: float

    @property
    def dram_read_bits(self) -> int:
        return sum(self.loads.values())

    @property
    def dram_bits(self) -> int:
        return self.dram_read_bits + self.stores

    @property
    def split(self) -> tuple[str, ...]:
        """The loops of more than one tile, outermost first (only their order changes the traffic)."""
        return tuple(loop for loop in self.order if self.counts[loop] > 1)

    @property
    def tiles(self) -> int:
        product = 1
        for loop in LOOPS:
            product *= self.counts[loop]
        return product


def _candidates(dim: int, unit: int = 1) -> list[int]:
    """Power-of-two multiples of ``unit``, capped at ``dim``, up to the first that covers it."""
    steps = (ceil_div(dim, unit) - 1).bit_length()
    return sorted({min(unit << i, dim) for i in range(steps + 1)})


def _tile_bits(shape: ConvShape, arch: BitFusionArch, b: int, o: int, ic: int, oc: int) -> dict:
    """Footprint of one tile of each tensor, as the simulator sizes it."""
    lanes = arch.rows * arch.perf_factor(shape.a_bits, shape.w_bits)
    kk = shape.k * shape.k
    wgt = ceil_div(kk * ic, lanes) * lanes * oc * shape.w_bits
    if shape.im2col:
        act = o * o * kk * ic * b * shape.a_bits
    else:
        side = shape.k + (o - 1) * shape.s
        act = side * side * ic * b * shape.a_bits
    out = o * o * ceil_div(oc, arch.cols) * arch.cols * b * arch.psum_bits
    return {"act": act, "wgt": wgt, "out": out}


def tile_compute_cycles(shape: ConvShape, arch: BitFusionArch, b: int, o: int, ic: int, oc: int) -> int:
    lanes = arch.rows * arch.perf_factor(shape.a_bits, shape.w_bits)
    kk = shape.k * shape.k
    if shape.im2col:
        return b * o * o * ceil_div(oc, arch.cols) * ceil_div(kk * ic, lanes)
    return b * ceil_div(oc, arch.cols) * o * o * kk * ceil_div(ic, lanes)


def _walk(tile: int, tensor: str, order, counts: dict, cap: float) -> tuple[int, int, int]:
    """(total DRAM bits of ``tensor``, the largest block that stayed on chip, how many innermost
    loops that block spans) for one loop order."""
    total, resident, reused, depth = tile, tile, True, 0
    for loop in reversed(order):
        if not reused:
            total *= counts[loop]
            continue
        if tensor in INDEXES[loop]:
            total *= counts[loop]
            if total > cap:
                reused = False
                continue
            resident = total
        depth += 1
    return total, resident, depth


def _sram_access_pj(shape: ConvShape, arch: BitFusionArch, b: int, o: int, ic: int, oc: int, tiles: int) -> float:
    """On-chip read/write energy of the simulator's innermost (stationary) schedule for the tile."""
    pf = arch.perf_factor(shape.a_bits, shape.w_bits)
    lanes, kk, psum = arch.rows * pf, shape.k * shape.k, arch.psum_bits
    a, w = shape.a_bits, shape.w_bits
    out_loop = ceil_div(oc, arch.cols) * arch.cols
    red_loop = ceil_div(ic * kk, lanes) * lanes if shape.im2col else ceil_div(ic, lanes) * lanes * kk
    pix_loop = b * o * o
    stationary = {
        "is": red_loop * pix_loop * (a + out_loop * (w + psum)),
        "os": out_loop * pix_loop * (psum + red_loop * (a + w)),
        "ws": red_loop * out_loop * (w + pix_loop * (a + psum)),
    }
    best = min(stationary.values())
    reduction, pixels = kk * ic, pix_loop
    if stationary["is"] == best:
        act, wgt, out = reduction * pixels * a, reduction * pixels * oc * w, reduction * pixels * oc * psum
    elif stationary["os"] == best:
        act, wgt, out = oc * pixels * reduction * a, oc * pixels * reduction * w, oc * pixels * psum
    else:
        act, wgt, out = reduction * oc * pixels * a, reduction * oc * w, reduction * oc * pixels * psum
    read_act, read_wgt, read_out = arch.read_pj
    return tiles * (act * read_act + wgt * read_wgt + out * read_out + out * arch.write_pj[2])


def _evaluate(shape: ConvShape, arch: BitFusionArch, sizes: dict, counts: dict):
    """Every loop order's mapping of one tiling (None if a tile overflows its half buffer).

    Loops of a single tile do not change the traffic wherever they sit, so only the distinct
    orders of the split loops are priced.
    """
    tile = _tile_bits(shape, arch, sizes["b"], sizes["ow"], sizes["ic"], sizes["oc"])
    caps = {t: arch.buffer_bits[t] / 2 for t in TENSORS}
    if any(tile[t] > caps[t] for t in TENSORS):
        return
    tiles = 1
    for loop in LOOPS:
        tiles *= counts[loop]
    compute = tiles * tile_compute_cycles(shape, arch, sizes["b"], sizes["ow"], sizes["ic"], sizes["oc"])
    on_chip = _sram_access_pj(shape, arch, sizes["b"], sizes["ow"], sizes["ic"], sizes["oc"], tiles)
    split = [loop for loop in LOOPS if counts[loop] > 1]
    fixed = [loop for loop in LOOPS if counts[loop] == 1]
    for order in itertools.permutations(split):
        loads, first = {}, 0
        for tensor in TENSORS:
            loads[tensor], resident, _ = _walk(tile[tensor], tensor, order, counts, caps[tensor])
            first += resident
        stores, last = loads["out"], _walk(tile["out"], "out", order, counts, caps["out"])[1]
        dram = sum(loads.values()) + stores
        middle = ceil_div(dram - first - last, arch.if_width)
        cycles = compute + max(0, middle - compute) + ceil_div(first, arch.if_width) + ceil_div(last, arch.if_width)
        fills = sum(loads[t] * arch.write_pj[i] for i, t in enumerate(TENSORS)) + stores * arch.read_pj[2]
        energy = compute * arch.core_pj_per_cycle + fills + dram * arch.dram_pj + on_chip
        yield BitFusionMapping(shape, tuple(fixed) + order, dict(counts), dict(sizes), loads, stores, tile, first,
                               last, compute, cycles, energy)


@lru_cache(maxsize=4096)
def search(shape: ConvShape, arch: BitFusionArch) -> BitFusionMapping:
    """The simulator's choice: fastest over every loop order and power-of-two tiling (ties: least energy)."""
    oc_unit = 1 if shape.im2col else arch.cols
    dims = dict(zip(LOOPS, (shape.batch, shape.o, shape.o, shape.ic, shape.oc), strict=True))
    ties: list[BitFusionMapping] = []  # every mapping of the best (cycles, energy), tilings ascending
    for b, o, ic, oc in itertools.product(_candidates(shape.batch), _candidates(shape.o), _candidates(shape.ic),
                                          _candidates(shape.oc, oc_unit)):
        sizes = {"b": b, "ow": o, "oh": o, "ic": ic, "oc": oc}
        counts = {loop: ceil_div(dims[loop], sizes[loop]) for loop in LOOPS}
        for mapping in _evaluate(shape, arch, sizes, counts):
            key, best = (mapping.cycles, mapping.energy_pj), (ties[0].cycles, ties[0].energy_pj) if ties else None
            if best is None or key[0] < best[0] or (key[0] == best[0] and key[1] < best[1] * (1 - TIE)):
                ties = [mapping]
            elif key[0] == best[0] and key[1] <= best[1] * (1 + TIE):
                ties.append(mapping)
    if not ties:
        raise ValueError(f"no BitFusion tile of {shape} fits the buffers {arch.buffer_bits}")
    for order in SIMULATOR_ORDERS:  # the simulator keeps the first order's first tiling among exact ties
        for mapping in ties:
            if tuple(loop for loop in order if mapping.counts[loop] > 1) == mapping.order[-len(mapping.split):]:
                return dataclasses.replace(mapping, order=order)
    return ties[0]


def conv_shape(op: Gemm) -> ConvShape:
    """How the simulator sees an hwsim GEMM: a 1×1 convolution of batch ``m``, or the op's convolution."""
    for bits in (op.bits_a, op.bits_b):
        if bits > 8:
            raise HwsimError(f"op '{op.name}': BitFusion's simulator runs 1..8-bit operands, got {bits} bits; "
                             "use mapping='search' for wider operands")
    if op.conv is None:
        return ConvShape.gemm(op.m, op.k, op.n, op.bits_a, op.bits_b)
    conv = op.conv
    if conv.kernel_h != conv.kernel_w or conv.out_h != conv.out_w:
        raise HwsimError(f"op '{op.name}': BitFusion's simulator maps square kernels and outputs only")
    return ConvShape(conv.kernel_h, conv.out_h, conv.stride, conv.in_channels, op.n, conv.batch, op.bits_a,
                     op.bits_b, conv.first_layer)


def gemm_of(shape: ConvShape, name: str) -> Gemm:
    """The hwsim GEMM of a layer as the simulator describes it (the inverse of :func:`conv_shape`)."""
    if shape.k == 1 and shape.o == 1:
        return Gemm(name, shape.batch, shape.ic, shape.oc, shape.a_bits, shape.w_bits)
    conv = Conv2d(shape.k, shape.k, shape.s, shape.o, shape.o, shape.ic, shape.batch, shape.im2col)
    return Gemm.from_conv(name, conv, shape.oc, shape.a_bits, shape.w_bits)


def replay(op: Gemm, accel: Accelerator) -> LoopNestPlan:
    """The simulator's mapping of ``op`` on a ``bitfusion`` preset, as a plan hwsim prices."""
    shape = conv_shape(op)
    arch = BitFusionArch.from_accelerator(accel)
    mapping = search(shape, arch)
    caps = {t: arch.buffer_bits[t] / 2 for t in TENSORS}
    loops = tuple(Loop(name, mapping.counts[name]) for name in mapping.order if mapping.counts[name] > 1)
    split = tuple(loop.name for loop in loops)
    tensors = {}
    for tensor, ours in (("act", "a"), ("wgt", "b"), ("out", "out")):
        depth = _walk(mapping.tile_bits[tensor], tensor, split, mapping.counts, caps[tensor])[2]
        indexed = frozenset(loop for loop in LOOPS if tensor in INDEXES[loop])
        tensors[ours] = TensorTiles(mapping.tile_bits[tensor], indexed, depth)
    sizes, kk = mapping.sizes, shape.k * shape.k
    pixels = sizes["b"] * sizes["ow"] * sizes["oh"]
    tile = (pixels, kk * sizes["ic"], sizes["oc"]) if shape.im2col else (pixels * kk, sizes["ic"], sizes["oc"])
    label = " ".join(f"{loop.name}{sizes[loop.name]}x{loop.count}" for loop in loops) or "one tile"
    return LoopNestPlan(op, "bitfusion", loops, tile, tensors, out_loaded=True, label=f"bitfusion: {label}",
                        block_stages=True)
