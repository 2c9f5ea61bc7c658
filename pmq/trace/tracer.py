"""Trace any nn.Module into a :class:`~pmq.trace.graph.ModelTrace` with one real forward pass.

Tracing is at the torch-function level (``TorchFunctionMode``) with module paths from
:class:`~pmq.trace.scope.ModuleScope`: the model runs eagerly, so Python control flow (Swin's
shifted windows, timm's branches) needs no special support, each op is seen as the user wrote it
(``F.linear`` with its weight, ``F.conv2d`` with kernel and stride, ``scaled_dot_product_attention`` as
one call that is decomposed into q·kᵀ, softmax and attn·v) and the quantized wrapper replaces the
very same calls at run time. Ops that produce a float tensor and that the tracer cannot price are
refused, naming the op and its module path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from pmq.errors import PMQError
from pmq.trace.graph import ConvInfo, ModelTrace, TracedGemm, TracedVector, einsum_shape, gemm_shape
from pmq.trace.scope import GEMM_FUNCS, Frame, ModuleScope, func_name

_VECTOR = {
    **dict.fromkeys(("softmax", "log_softmax"), "softmax"),
    **dict.fromkeys(("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "normalize",
                     "local_response_norm"), "norm"),
    **dict.fromkeys(("gelu", "relu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "elu", "leaky_relu",
                     "mish", "softplus", "relu6", "hardtanh", "selu", "celu", "glu", "exp", "erf", "sqrt",
                     "rsqrt", "pow", "reciprocal"), "activation"),
    **dict.fromkeys(("add", "sub", "mul", "div", "addcmul", "addcdiv", "neg", "abs", "clamp", "clip",
                     "masked_fill", "where", "maximum", "minimum", "lerp"), "elementwise"),
    **dict.fromkeys(("mean", "sum", "amax", "amin", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
                     "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "logsumexp", "var",
                     "std", "norm"), "reduce"),
}
"""Vector ops by their torch function name (in-place and operator forms normalised, see :func:`_base_name`)."""
_MOVES = frozenset((
    "dropout", "dropout1d", "dropout2d", "alpha_dropout", "reshape", "view", "view_as", "reshape_as", "permute",
    "transpose", "flatten", "unflatten", "expand", "expand_as", "cat", "concat", "stack", "contiguous",
    "unsqueeze", "squeeze", "pad", "roll", "getitem", "setitem", "unbind", "split", "split_with_sizes", "chunk",
    "tensor_split", "clone", "to", "float", "type", "detach", "flip", "narrow", "select", "repeat", "tile",
    "movedim", "swapaxes", "swapdims", "t", "zeros_like", "ones_like", "new_zeros", "new_ones", "new_empty",
    "index_select", "gather", "as_strided", "repeat_interleave", "fill", "zero", "copy", "identity", "get",
    "tril", "triu", "diagonal", "masked_select", "numpy", "cpu", "cuda",
    "zeros", "ones", "empty", "full", "arange", "linspace", "tensor", "as_tensor", "rand", "randn", "empty_like",
))
"""Data movement and views: free (on hardware they are addressing, or fold into the neighbouring op)."""
_DUNDER = {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub", "imul": "mul", "rmul": "mul",
           "truediv": "div", "itruediv": "div", "rtruediv": "div", "matmul": "matmul", "rmatmul": "matmul"}


def _base_name(name: str) -> str:
    """``__iadd__`` → add, ``add_`` → add, ``__getitem__`` → getitem."""
    if name.startswith("__") and name.endswith("__"):
        inner = name[2:-2]
        return _DUNDER.get(inner, inner)
    return name.rstrip("_") or name


def _is_float_output(out: Any) -> bool:
    if isinstance(out, Tensor):
        return out.is_floating_point()
    return isinstance(out, (tuple, list)) and any(_is_float_output(o) for o in out)


def input_size_of(model: nn.Module) -> tuple[int, ...] | None:
    """(C, H, W) a model expects: a ViT patch embedding's own size, else timm's ``pretrained_cfg``."""
    embed = getattr(model, "patch_embed", None)
    proj, img_size = getattr(embed, "proj", None), getattr(embed, "img_size", None)
    if isinstance(proj, nn.Conv2d) and img_size:
        return (proj.in_channels, *img_size)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return tuple(int(s) for s in cfg["input_size"])
    return None


@dataclass
class _Event:
    """One priced call as it ran, before naming."""

    frame: Frame
    func: str
    family: str  # linear, conv, matmul, attention, or a vector kind
    shape: tuple  # GEMM (m, k, n, count) or (elements,)
    weight: Tensor | None = None
    bias: Tensor | None = None
    ordinal: int = -1
    conv: ConvInfo | None = None
    qkv_shape: tuple[int, ...] = ()  # the first operand of an attention matmul (B, H, N, hd)
    masked: bool = False
    softmaxes_before: int = 0


class _Recorder(TorchFunctionMode):
    """Runs every torch function and records the priced ones as :class:`_Event`."""

    def __init__(self, scope: ModuleScope) -> None:
        super().__init__()
        self.scope, self.events, self.softmaxes = scope, [], 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func_name(func)
        family = GEMM_FUNCS.get(name)
        ordinal = self.scope.next_gemm()[1] if family else -1
        out = func(*args, **kwargs)
        frame = self.scope.top
        if family is not None:
            self.events.append(_gemm_event(frame, name, family, ordinal, args, kwargs, out, self.softmaxes))
            return out
        base = _base_name(name)
        kind = _VECTOR.get(base)
        if kind is not None and _is_float_output(out):
            source = args[0] if kind == "reduce" and isinstance(args[0], Tensor) else out
            self.events.append(_Event(frame, base, kind, (source.numel(),)))
            self.softmaxes += kind == "softmax"
        elif kind is None and base not in _MOVES and _is_float_output(out):
            where = frame.path or "<root>"
            raise PMQError(f"op {base!r} in module {where!r} ({type(frame.module).__name__}) cannot be priced "
                           "by the tracer: replace it, or price it as a known op in pmq/trace/tracer.py")
        return out


def _gemm_event(frame: Frame, name: str, family: str, ordinal: int, args: tuple, kwargs: dict, out: Tensor,
                softmaxes: int) -> _Event:
    if family == "linear":
        x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        k, n = weight.shape[1], weight.shape[0]
        return _Event(frame, name, family, (x.numel() // k, k, n, 1), weight, bias, ordinal)
    if family == "conv":
        x, weight = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        params = dict(zip(("stride", "padding", "dilation", "groups"), args[3:], strict=False), **kwargs)
        groups = int(params.get("groups", 1))
        spatial = weight.dim() - 2
        info = ConvInfo(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                        _tuple(params.get("stride", 1), spatial), _tuple(params.get("padding", 0), spatial),
                        _tuple(params.get("dilation", 1), spatial), groups, tuple(x.shape[-spatial:]))
        batch = out.shape[0] if out.dim() == spatial + 2 else 1
        m = batch * math.prod(out.shape[-spatial:])
        return _Event(frame, name, family, (m, weight[0].numel(), weight.shape[0] // groups, groups), weight, bias,
                      ordinal, info)
    if name == "scaled_dot_product_attention":
        q, k, v = args[:3]
        count = math.prod(q.shape[:-2])
        mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
        return _Event(frame, name, family, (q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1], count),
                      ordinal=ordinal, qkv_shape=tuple(q.shape), masked=mask is not None, softmaxes_before=softmaxes)
    if name == "einsum":
        equation, operands = args[0], args[1:] if len(args) > 2 else tuple(args[1])
        if len(operands) != 2:
            raise PMQError(f"einsum {equation!r} in module {frame.path or '<root>'!r} has {len(operands)} operands: "
                           "only two-operand einsums can be priced as GEMMs")
        return _Event(frame, name, family, einsum_shape(equation, operands[0].shape, operands[1].shape),
                      ordinal=ordinal, qkv_shape=tuple(operands[0].shape), softmaxes_before=softmaxes)
    a, b = (args[1], args[0]) if name == "__rmatmul__" else args[:2]
    return _Event(frame, name, family, gemm_shape(a.shape, b.shape), ordinal=ordinal, qkv_shape=tuple(a.shape),
                  softmaxes_before=softmaxes)


def _tuple(value: Any, n: int) -> tuple:
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def is_module_gemm(module: nn.Module, weight: Tensor | None) -> bool:
    """A Linear / Conv2d module whose own forward made the call: quantized by swapping the module."""
    return type(module) in (nn.Linear, nn.Conv2d) and weight is module.weight


def _join(path: str, leaf: str) -> str:
    return f"{path}.{leaf}" if path else leaf


class _Namer:
    """Names ops by module path: a Linear/Conv/LayerNorm/GELU module's own op is its path
    (``blocks.3.attn.qkv``, ``blocks.3.norm1``); other ops are ``path.kind`` numbered per module call
    (``blocks.3.add``, ``blocks.3.add_1``); attention is ``path.matmul_qk`` / ``path.softmax`` /
    ``path.matmul_av`` (SDPA, or two matmuls with a softmax between them)."""

    def __init__(self) -> None:
        self.used: dict[int, dict[str, int]] = {}  # id(frame) → base name → uses in that call
        self.leaf_taken: set[int] = set()

    def name(self, frame: Frame, base: str, own: bool) -> str:
        if own and not any(True for _ in frame.module.children()) and id(frame) not in self.leaf_taken:
            self.leaf_taken.add(id(frame))
            return frame.path or base
        used = self.used.setdefault(id(frame), {})
        index = used.get(base, 0)
        used[base] = index + 1
        return _join(frame.path, base if index == 0 else f"{base}_{index}")


def _attention_pairs(events: list[_Event]) -> set[int]:
    """Indices of explicit q·kᵀ matmuls: the next matmul of the same module call comes after a softmax."""
    pairs: set[int] = set()
    last: dict[int, int] = {}
    for i, event in enumerate(events):
        if event.family != "matmul":
            continue
        previous = last.get(id(event.frame))
        if previous is not None and previous not in pairs and events[previous].softmaxes_before < event.softmaxes_before:
            pairs.add(previous)
        last[id(event.frame)] = i
    return pairs


def _ops(events: list[_Event]) -> tuple[list[TracedGemm | TracedVector], dict[str, tuple[int, int, int, int]]]:
    namer, ops, attention = _Namer(), [], {}
    pairs = _attention_pairs(events)
    av_next: set[int] = set()
    for i, event in enumerate(events):
        frame = event.frame
        if event.family == "attention":
            L, E, S, Ev, count = event.shape
            qk, av = namer.name(frame, "matmul_qk", False), namer.name(frame, "matmul_av", False)
            ops.append(TracedGemm(qk, "matmul", L, E, S, count, frame.path, event.ordinal, event.func))
            if event.masked:
                ops.append(TracedVector(namer.name(frame, "mask_add", False), "elementwise", count * L * S,
                                        frame.path, event.func))
            ops.append(TracedVector(namer.name(frame, "softmax", False), "softmax", count * L * S, frame.path,
                                    event.func))
            ops.append(TracedGemm(av, "matmul", L, S, Ev, count, frame.path, event.ordinal, event.func))
            _note_attention(attention, frame.path, event.qkv_shape)
        elif event.family in ("linear", "conv", "matmul"):
            if i in pairs or i in av_next:
                base = "matmul_qk" if i in pairs else "matmul_av"
                if i in pairs:
                    av_next.add(next(j for j in range(i + 1, len(events)) if events[j].family == "matmul"
                                     and events[j].frame is frame))
                    _note_attention(attention, frame.path, event.qkv_shape)
            else:
                base = event.family
            own = event.family != "matmul" and is_module_gemm(frame.module, event.weight)
            m, k, n, count = event.shape
            weight_params = event.weight.numel() if event.weight is not None else 0
            params = weight_params + (event.bias.numel() if event.bias is not None else 0)
            kind = "conv" if event.family == "conv" else event.family
            ops.append(TracedGemm(namer.name(frame, base, own), kind, m, k, n, count, frame.path, event.ordinal,
                                  event.func, weight_params, params, event.conv))
        else:
            own = event.family in ("norm", "activation", "softmax")
            ops.append(TracedVector(namer.name(frame, event.func, own), event.family, event.shape[0], frame.path,
                                    event.func))
    return _merge_repeats(ops), attention


def _note_attention(attention: dict, path: str, q_shape: tuple[int, ...]) -> None:
    """(batch, tokens, heads, head_dim) from q: (B, H, N, hd), or (B, N, d) for a single head."""
    if len(q_shape) == 4:
        batch, heads, tokens, head_dim = q_shape
        attention.setdefault(path, (batch, tokens, heads, head_dim))
    elif len(q_shape) == 3:
        batch, tokens, dim = q_shape
        attention.setdefault(path, (batch, tokens, 1, dim))


def _merge_repeats(ops: list) -> list:
    """A module called again with the same shapes adds to its op's count (elements); other shapes get ``.callN``."""
    merged: dict[str, Any] = {}
    for op in ops:
        name, seen = op.name, merged.get(op.name)
        if seen is not None and isinstance(op, TracedGemm) and (seen.m, seen.k, seen.n) == (op.m, op.k, op.n):
            merged[name] = replace(seen, count=seen.count + op.count)
            continue
        if seen is not None and isinstance(op, TracedVector):
            merged[name] = replace(seen, elements=seen.elements + op.elements)
            continue
        call = 1
        while name in merged:
            name, call = f"{op.name}.call{call}", call + 1
        merged[name] = replace(op, name=name)
    return list(merged.values())


def trace_model(model: nn.Module, input_size: tuple[int, ...] | None = None, batch: int = 1,
                name: str | None = None) -> ModelTrace:
    """One eval-mode forward on zeros of shape (batch, *input_size), every op recorded.

    ``input_size`` (C, H, W) defaults to :func:`input_size_of`. The model's mode is restored."""
    size = tuple(input_size) if input_size is not None else input_size_of(model)
    label = name or type(model).__name__
    if size is None:
        raise PMQError(f"{label}: no input size known (no pretrained_cfg['input_size']): give its input "
                       "size C,H,W", param="input_size")
    if batch < 1 or any(int(s) <= 0 for s in size):
        raise PMQError(f"input shape {(batch, *size)} must be positive sizes (batch, channels, height, width)")
    was_training = model.training
    start = time.perf_counter()
    scope = ModuleScope(model)
    recorder, x = _Recorder(scope), torch.zeros(batch, *size)
    try:
        with torch.no_grad(), scope, recorder:
            model.eval()(x)
    except PMQError:
        raise
    except Exception as exc:  # any failure of the user's forward on this input
        first = (str(exc).splitlines() or [""])[0]
        raise PMQError(f"{label} fails on an input of shape {(batch, *size)} ({type(exc).__name__}: {first}): "
                       "give the input size C,H,W it expects", param="input_size") from None
    finally:
        model.train(was_training)
    ops, attention = _ops(recorder.events)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    prefix = int(getattr(model, "num_prefix_tokens", 1)) if getattr(model, "cls_token", None) is not None else 0
    return ModelTrace(label, (batch, *size), tuple(ops), params, attention, prefix, time.perf_counter() - start)
