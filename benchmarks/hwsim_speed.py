"""hwsim speed: full DeiT-S (batch 1) event simulation per preset, and a BitFusion cost table.

Goals (issue 3, item 7): event simulation of deit_small_patch16_224 at batch 1 in <= 1 s per
preset; the cost table of all DeiT-S components x bit pairs {2,3,4,6,8}^2 on bitfusion through
``hwsim.estimate`` in <= 10 s. Prints a table; asserts nothing. Run: ``python benchmarks/hwsim_speed.py``.
The DeiT-S shapes are written out here (torch-free); pmq.trace records them from a real model.
"""

from __future__ import annotations

import itertools
import time

import accelerators
import hwsim

TOKENS, DIM, HEADS, HEAD_DIM, MLP, DEPTH, CLASSES = 197, 384, 6, 64, 1536, 12, 1000
BITS = (2, 3, 4, 6, 8)


def deit_small(bits_w: int = 8, bits_a: int = 8) -> hwsim.Workload:
    w = hwsim.Workload()
    last = w.add(hwsim.Gemm("patch_embed.proj", 196, 768, DIM, bits_a, bits_w)).name
    for i in range(DEPTH):
        p, residual = f"blocks.{i}", last
        chain = [
            hwsim.VectorOp(f"{p}.norm1", "layernorm", TOKENS * DIM, bits_a),
            hwsim.Gemm(f"{p}.attn.qkv", TOKENS, DIM, 3 * DIM, bits_a, bits_w),
            hwsim.Gemm(f"{p}.attn.matmul_qk", TOKENS, HEAD_DIM, TOKENS, bits_a, bits_a, HEADS, "matmul"),
            hwsim.VectorOp(f"{p}.attn.softmax", "softmax", HEADS * TOKENS * TOKENS, bits_a),
            hwsim.Gemm(f"{p}.attn.matmul_av", TOKENS, TOKENS, HEAD_DIM, bits_a, bits_a, HEADS, "matmul"),
            hwsim.Gemm(f"{p}.attn.proj", TOKENS, DIM, DIM, bits_a, bits_w),
            hwsim.VectorOp(f"{p}.add1", "add", TOKENS * DIM, bits_a),
            hwsim.VectorOp(f"{p}.norm2", "layernorm", TOKENS * DIM, bits_a),
            hwsim.Gemm(f"{p}.mlp.fc1", TOKENS, DIM, MLP, bits_a, bits_w),
            hwsim.VectorOp(f"{p}.mlp.act", "gelu", TOKENS * MLP, bits_a),
            hwsim.Gemm(f"{p}.mlp.fc2", TOKENS, MLP, DIM, bits_a, bits_w),
            hwsim.VectorOp(f"{p}.add2", "add", TOKENS * DIM, bits_a),
        ]
        for op in chain:
            after = [last, residual] if op.name.endswith((".add1", ".add2")) else [last]
            last = w.add(op, after=after).name
            if op.name.endswith(".add1"):
                residual = last
    last = w.add(hwsim.VectorOp("norm", "layernorm", TOKENS * DIM, bits_a), after=[last]).name
    w.add(hwsim.Gemm("head", 1, DIM, CLASSES, bits_a, bits_w), after=[last])
    return w


def main() -> None:
    print("DeiT-S (deit_small_patch16_224), batch 1, W8A8: event simulation (hwsim.simulate), goal <= 1 s")
    print(f"{'preset':<15}{'ops':>5}{'cycles':>12}{'latency ms':>12}{'energy uJ':>11}{'sim s':>8}{'estimate s':>12}")
    workload = deit_small()
    for name in accelerators.available():
        accel = accelerators.load(name)
        start = time.perf_counter()
        result = hwsim.simulate(workload, accel)
        sim_s = time.perf_counter() - start
        start = time.perf_counter()
        hwsim.estimate_workload(workload, accel)
        est_s = time.perf_counter() - start
        print(f"{name:<15}{len(result.ops):>5}{result.cycles:>12}{result.latency_s * 1e3:>12.3f}"
              f"{result.energy_pj / 1e6:>11.1f}{sim_s:>8.2f}{est_s:>12.3f}")

    accel = accelerators.load("bitfusion")
    components = [op for op in deit_small().ops if isinstance(op, hwsim.Gemm)]
    start = time.perf_counter()
    table = {}
    for op, (bits_w, bits_a) in itertools.product(components, itertools.product(BITS, BITS)):
        bits_b = bits_a if op.kind == "matmul" else bits_w
        variant = hwsim.Gemm(op.name, op.m, op.k, op.n, bits_a, bits_b, op.count, op.kind)
        cost = hwsim.estimate(variant, accel)
        table[op.name, bits_w, bits_a] = (cost.cycles, cost.energy_pj, cost.bops)
    elapsed = time.perf_counter() - start
    print()
    print("Cost table on bitfusion via hwsim.estimate (fresh accelerator object, cold caches), goal <= 10 s")
    print(f"{'components':>11}{'bit pairs':>11}{'entries':>9}{'seconds':>9}")
    print(f"{len(components):>11}{len(BITS) ** 2:>11}{len(table):>9}{elapsed:>9.2f}")


if __name__ == "__main__":
    main()
