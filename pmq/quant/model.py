"""Wrap any traced model so that each of its GEMM-like ops carries its own bit-widths.

The components are the trace's GEMM-like ops, named by module path (``patch_embed.proj``,
``blocks.3.attn.qkv``, ``blocks.3.attn.matmul_qk``, ``layer1.0.conv1``, ``head``...):

- a ``nn.Linear`` / ``nn.Conv2d`` module becomes a :class:`QuantLinear` / :class:`QuantConv2d` in place
  (same Parameters, so state-dict keys are unchanged);
- a functional product inside a module (``scaled_dot_product_attention``, ``@``, ``matmul``, ``bmm``,
  ``einsum``) gets a :class:`QuantMatMul` child on that module (``blocks.3.attn.matmul_qk``), and
  during the wrapper's forward a ``TorchFunctionMode`` routes the call (found by module path and
  its place in that module call, as the tracer numbered it) to it; attention is decomposed into
  q·kᵀ → mask → softmax → attn·v, each product quantized.

Everything else (norms, softmax, activations, adds, embeddings) stays float: those run on an
accelerator's vector unit, not on the mixed-precision GEMM array. Patch-wise precision plugs in
through :func:`register_patchwise` (the wrapper never imports it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from pmq.allocation import FLOAT, BitAllocation
from pmq.errors import PMQError
from pmq.quant.modules import Operands, QuantComponent, QuantConv2d, QuantLinear, QuantMatMul, apply_mask
from pmq.quant.quantizers import ActQuantizer
from pmq.trace import ModelTrace, TracedGemm, trace_model
from pmq.trace.scope import GEMM_FUNCS, ModuleScope, func_name

DEFAULT_GRANULARITY = "token"
"""Per-token dynamic activation ranges: see ``benchmarks/quant_table.py`` for the measurements."""
DEFAULT_WEIGHT_CLIPPING = "minmax"
"""On the int-b grid, min-max weight ranges beat MSE clipping on the demo ViT (W2A8 75.7 vs 67.7,
W4A4 89.2 vs 88.7; MSE only wins W3A8, 87.8 vs 87.0): the MSE-optimal clip minimises the weight
error, not the output error, and clips the large weights that matter."""

Installer = Callable[["QuantModel", dict], Any]
_PATCHWISE: list[Installer] = []


def register_patchwise(installer: Installer) -> None:
    """Patch-wise precision registers how to install its settings on a wrapper (``pmq.patchwise`` does on import)."""
    _PATCHWISE[:] = [installer]


def attend(qk: QuantMatMul, av: QuantMatMul, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
           dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
           enable_gqa: bool = False) -> Tensor:
    """``scaled_dot_product_attention`` as its two quantized products: q·kᵀ → mask → softmax → attn·v."""
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    probs = apply_mask(qk(q * scale, k), attn_mask, is_causal).softmax(dim=-1)
    if dropout_p:
        probs = F.dropout(probs, dropout_p)
    return av(probs, v)


def _sdpa_arguments(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                    dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                    enable_gqa: bool = False) -> tuple:
    """``scaled_dot_product_attention``'s arguments, positional and in order, whatever way they were passed."""
    return query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa


class _AttentionRoute:
    """An SDPA call: the patch-wise handler of its module when one is installed, else :func:`attend`."""

    def __init__(self, path: str, qk: QuantMatMul, av: QuantMatMul, handlers: dict[str, Callable]) -> None:
        self.path, self.qk, self.av, self.handlers = path, qk, av, handlers

    def __call__(self, name: str, args: tuple, kwargs: dict) -> Tensor:
        arguments = _sdpa_arguments(*args, **kwargs)
        handler = self.handlers.get(self.path)
        if handler is not None:
            return handler(*arguments)
        return attend(self.qk, self.av, *arguments)


class _MatMulRoute:
    """A product of two activations: ``a @ b`` in any spelling, or a two-operand einsum."""

    def __init__(self, component: QuantMatMul) -> None:
        self.component = component

    def __call__(self, name: str, args: tuple, kwargs: dict) -> Tensor:
        if name == "einsum":
            operands = args[1:] if len(args) > 2 else tuple(args[1])
            return self.component(*operands, equation=args[0])
        a, b = (args[1], args[0]) if name == "__rmatmul__" else (args[0], args[1] if len(args) > 1 else kwargs["other"])
        return self.component(a, b)


class _Router(TorchFunctionMode):
    """Sends each traced functional GEMM to its quantized component; everything else runs as is."""

    def __init__(self, scope: ModuleScope, routes: dict[tuple[str, int], Callable]) -> None:
        super().__init__()
        self.scope, self.routes = scope, routes

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func_name(func)
        if name in GEMM_FUNCS:
            route = self.routes.get(self.scope.next_gemm())
            if route is not None:
                return route(name, args, kwargs)
        return func(*args, **kwargs)


def _wrap(model: nn.Module, trace: ModelTrace) -> None:
    """Swap Linear/Conv2d modules for quantized ones and attach a QuantMatMul per functional product
    (SDPA's q·kᵀ half takes k token-major, as the call gives it)."""
    attention_calls: set[tuple[str, int]] = set()
    for op in trace.gemms:
        owner_path, _, attr = op.name.rpartition(".")
        owner = model.get_submodule(owner_path)
        if op.name == op.module:  # the module's own Linear / Conv2d call
            module = getattr(owner, attr)
            setattr(owner, attr, QuantLinear(module) if isinstance(module, nn.Linear) else QuantConv2d(module))
        elif op.kind != "matmul":
            raise PMQError(f"{op.name}: a functional {op.func} outside an nn.Linear / nn.Conv2d module cannot be "
                           "quantized: call it through an nn.Linear / nn.Conv2d module")
        elif owner_path != op.module or hasattr(owner, attr):
            raise PMQError(f"{op.name}: module {op.module!r} already has an attribute {attr!r} or the op was "
                           "renamed for a second call shape; it cannot carry a quantized product")
        else:
            first_half = op.func == "scaled_dot_product_attention" and (op.module, op.ordinal) not in attention_calls
            attention_calls.add((op.module, op.ordinal))
            owner.add_module(attr, QuantMatMul(transpose_b=first_half))


def _routes(trace: ModelTrace, components: dict[str, QuantComponent],
            handlers: dict[str, Callable]) -> dict[tuple[str, int], Callable]:
    routes: dict[tuple[str, int], Callable] = {}
    pending: dict[tuple[str, int], TracedGemm] = {}
    for op in trace.gemms:
        key = (op.module, op.ordinal)
        if op.name == op.module:
            continue
        if op.func != "scaled_dot_product_attention":
            routes[key] = _MatMulRoute(components[op.name])
        elif key in pending:  # the attn·v half of the pair
            routes[key] = _AttentionRoute(op.module, components[pending.pop(key).name], components[op.name], handlers)
        else:
            pending[key] = op
    return routes


class QuantModel(nn.Module):
    """A deep copy of a model whose GEMM-like ops are quantized components; ``qm(x)`` runs it.

    Starts all-float (logits equal to the original's). ``apply(allocation)`` sets bits;
    ``set_granularity`` picks per-tensor (static, needs ``calibrate``) or per-token (dynamic)
    activation ranges; ``recording()`` exposes the float operands for sensitivity metrics.
    """

    def __init__(self, model: nn.Module, granularity: str = DEFAULT_GRANULARITY,
                 weight_clipping: str = DEFAULT_WEIGHT_CLIPPING, trace: ModelTrace | None = None) -> None:
        super().__init__()
        wrapped = isinstance(model, QuantModel)
        self.trace = model.trace if wrapped else (trace or trace_model(model))
        self.model = copy.deepcopy(model.model if wrapped else model)
        if not wrapped:  # else: re-wrapping a wrapped copy, its components are already in place
            _wrap(self.model, self.trace)
        self._components: dict[str, QuantComponent] = {}
        for name in self.trace.component_names:
            component = self.model.get_submodule(name)
            component.component_name = name
            self._components[name] = component
        self.attention_handlers: dict[str, Callable[..., Tensor]] = {}  # module path → patch-wise attention
        self.enter_hooks: dict[str, Callable[[], None]] = {}  # module path → run as that module starts
        self._routes = _routes(self.trace, self._components, self.attention_handlers)
        self.patchwise: Any = None
        self.allocation = BitAllocation.uniform(FLOAT, self._components)
        self.apply(self.allocation)  # a re-wrapped copy starts float too
        self.set_granularity(granularity)
        self.set_weight_clipping(weight_clipping)
        self.train(model.training)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        scope = ModuleScope(self.model, self.enter_hooks)
        with scope, _Router(scope, self._routes):
            return self.model(*args, **kwargs)

    def component_names(self) -> list[str]:
        return list(self._components)

    def components(self) -> dict[str, QuantComponent]:
        """Name → quantized module (each has ``quantizer_a``, ``quantizer_w``, ``kind``)."""
        return dict(self._components)

    def component(self, name: str) -> QuantComponent:
        if name not in self._components:
            raise PMQError(f"unknown component {name!r}: see QuantModel.component_names()")
        return self._components[name]

    def apply(self, allocation: BitAllocation) -> QuantModel:
        """Set every component's bits (validated first) and its patch-wise token settings, if any. Returns self."""
        allocation.validate(self._components)
        for name, bits in allocation.items():
            component = self._components[name]
            component.set_bits(bits)
            component.token_bits_a = component.token_bits_w = None
        self.attention_handlers.clear()
        self.enter_hooks.clear()
        self.patchwise = None
        if allocation.patchwise:
            self.trace.check_patchwise()
            if not _PATCHWISE:
                raise PMQError("this allocation has patch-wise settings: import pmq.patchwise to install them")
            self.patchwise = _PATCHWISE[0](self, allocation.patchwise)
        self.allocation = allocation
        return self

    def activation_quantizers(self) -> Iterator[ActQuantizer]:
        """Every activation quantizer: each component's input, and both operands of the matmuls."""
        for component in self._components.values():
            yield component.quantizer_a
            if isinstance(component.quantizer_w, ActQuantizer):
                yield component.quantizer_w

    def set_granularity(self, granularity: str, names: Iterable[str] | None = None) -> None:
        """Activation ranges "tensor" (static, calibrated) or "token" (dynamic per row), for all or some."""
        for name in self._components if names is None else names:
            component = self.component(name)
            component.quantizer_a.granularity = granularity
            if isinstance(component.quantizer_w, ActQuantizer):
                component.quantizer_w.granularity = granularity

    def set_weight_clipping(self, clipping: str) -> None:
        """Weight ranges "minmax" (max |w| per channel) or "mse" (MSE-optimal clip per channel)."""
        for component in self._components.values():
            if not isinstance(component.quantizer_w, ActQuantizer):
                component.quantizer_w.clipping = clipping

    @contextmanager
    def recording(self, names: Iterable[str] | None = None) -> Iterator[dict[str, Operands]]:
        """Within the block, forwards store each component's float operands in the yielded dict.

        ``Operands.a`` is the input activation (first matmul operand), ``Operands.w`` the weight
        Parameter (second matmul operand); both stay in the autograd graph (give the images
        ``requires_grad=True`` to differentiate with respect to the first layer's input), e.g.::

            with qm.recording() as ops:
                loss = F.cross_entropy(qm(x), y)
                grads = torch.autograd.grad(loss, [ops[n].a for n in ops])
        """
        store: dict[str, Operands] = {}
        chosen = [self.component(name) for name in (self._components if names is None else names)]
        for component in chosen:
            component.recording = store
        try:
            yield store
        finally:
            for component in chosen:
                component.recording = None


def quantize_model(model: nn.Module, granularity: str = DEFAULT_GRANULARITY,
                   weight_clipping: str = DEFAULT_WEIGHT_CLIPPING, trace: ModelTrace | None = None) -> QuantModel:
    """Wrap a deep copy of any traceable model (the original is left untouched); all components float.

    Given a QuantModel, returns an independent float copy of it (calibrated observers included).
    Pass the model's ``trace`` when it is at hand, to skip tracing it again.
    """
    return QuantModel(model, granularity, weight_clipping, trace)
