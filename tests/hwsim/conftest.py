"""Shared fixtures: a torch-free DeiT-S (deit_small_patch16_224) workload builder for tests."""

from __future__ import annotations

import pytest

import accelerators
import hwsim

DEIT_S = {"tokens": 197, "dim": 384, "heads": 6, "head_dim": 64, "mlp": 1536, "depth": 12, "classes": 1000}


def deit_small_workload(bits_w: int = 8, bits_a: int = 8, batch: int = 1, depth: int = 12) -> hwsim.Workload:
    """DeiT-S at batch ``batch``: patch embedding, ``depth`` blocks (per-head matmuls as ``count``), head."""
    t, d, h, hd, mlp = (DEIT_S[key] for key in ("tokens", "dim", "heads", "head_dim", "mlp"))
    rows = batch * t
    w = hwsim.Workload()
    last = w.add(hwsim.Gemm("patch_embed.proj", batch * 196, 768, d, bits_a, bits_w)).name
    for i in range(depth):
        p = f"blocks.{i}"
        residual = last
        ln1 = w.add(hwsim.VectorOp(f"{p}.norm1", "layernorm", rows * d, bits_a), after=[last]).name
        qkv = w.add(hwsim.Gemm(f"{p}.attn.qkv", rows, d, 3 * d, bits_a, bits_w), after=[ln1]).name
        qk = w.add(hwsim.Gemm(f"{p}.attn.matmul_qk", t, hd, t, bits_a, bits_a, count=h * batch, kind="matmul"),
                   after=[qkv]).name
        sm = w.add(hwsim.VectorOp(f"{p}.attn.softmax", "softmax", batch * h * t * t, bits_a), after=[qk]).name
        av = w.add(hwsim.Gemm(f"{p}.attn.matmul_av", t, t, hd, bits_a, bits_a, count=h * batch, kind="matmul"),
                   after=[sm, qkv]).name
        proj = w.add(hwsim.Gemm(f"{p}.attn.proj", rows, d, d, bits_a, bits_w), after=[av]).name
        add1 = w.add(hwsim.VectorOp(f"{p}.add1", "add", rows * d, bits_a), after=[proj, residual]).name
        ln2 = w.add(hwsim.VectorOp(f"{p}.norm2", "layernorm", rows * d, bits_a), after=[add1]).name
        fc1 = w.add(hwsim.Gemm(f"{p}.mlp.fc1", rows, d, mlp, bits_a, bits_w), after=[ln2]).name
        act = w.add(hwsim.VectorOp(f"{p}.mlp.act", "gelu", rows * mlp, bits_a), after=[fc1]).name
        fc2 = w.add(hwsim.Gemm(f"{p}.mlp.fc2", rows, mlp, d, bits_a, bits_w), after=[act]).name
        last = w.add(hwsim.VectorOp(f"{p}.add2", "add", rows * d, bits_a), after=[fc2, add1]).name
    norm = w.add(hwsim.VectorOp("norm", "layernorm", rows * d, bits_a), after=[last]).name
    w.add(hwsim.Gemm("head", batch, d, DEIT_S["classes"], bits_a, bits_w), after=[norm])
    return w


@pytest.fixture(scope="session")
def presets() -> dict[str, hwsim.Accelerator]:
    return {name: accelerators.load(name) for name in accelerators.available()}
