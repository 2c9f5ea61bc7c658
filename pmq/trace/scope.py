"""Which module is running: the module-path stack that both the tracer and the quantized wrapper
name ops by, so a traced op and the quantized op that replaces it get the same name by construction.

For the duration of a ``with ModuleScope(root)``, global forward (pre-)hooks push and pop the path of
every submodule of ``root`` as it runs; an op is attributed to the innermost running module, and
the GEMM-like calls of each module call are numbered (its ``ordinal``) in the order they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

GEMM_FUNCS = {
    "linear": "linear", "conv1d": "conv", "conv2d": "conv",
    "matmul": "matmul", "__matmul__": "matmul", "__rmatmul__": "matmul", "bmm": "matmul", "mm": "matmul",
    "einsum": "matmul", "scaled_dot_product_attention": "attention",
}
"""Torch function name → GEMM family; ``attention`` is decomposed into q·kᵀ and attn·v."""


def func_name(func: Callable) -> str:
    return getattr(func, "__name__", type(func).__name__)


@dataclass
class Frame:
    """One running module call: its path, the module, and how many GEMM-like calls it made so far."""

    path: str
    module: nn.Module
    gemm_calls: int = 0


class ModuleScope:
    """Tracks the running module path of ``root``'s submodules; ``enter_hooks[path]()`` runs as a module starts."""

    def __init__(self, root: nn.Module, enter_hooks: dict[str, Callable[[], None]] | None = None) -> None:
        self.paths = {id(module): path for path, module in root.named_modules()}
        self.enter_hooks = enter_hooks or {}
        self.stack: list[Frame] = [Frame("", root)]
        self._handles: list = []

    @property
    def top(self) -> Frame:
        return self.stack[-1]

    def next_gemm(self) -> tuple[str, int]:
        """The running module's path and this GEMM-like call's ordinal within the module call."""
        frame = self.stack[-1]
        frame.gemm_calls += 1
        return frame.path, frame.gemm_calls - 1

    def _push(self, module: nn.Module, _args: tuple) -> None:
        path = self.paths.get(id(module))
        if path is not None:
            self.stack.append(Frame(path, module))
            hook = self.enter_hooks.get(path)
            if hook is not None:
                hook()

    def _pop(self, module: nn.Module, _args: tuple, _output: object) -> None:
        if len(self.stack) > 1 and self.stack[-1].module is module:
            self.stack.pop()

    def __enter__(self) -> ModuleScope:
        self._handles = [register_module_forward_pre_hook(self._push),
                         register_module_forward_hook(self._pop, always_call=True)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        del self.stack[1:]
