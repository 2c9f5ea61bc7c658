"""How fast is the exact Pareto frontier on a DeiT-S-sized search space?

deit_small_patch16_224: 12 blocks × (qkv, matmul_qk, matmul_av, proj, fc1, fc2) + patch_embed + head
= 74 components, each with 25 (w_bits, a_bits) pairs from {2, 3, 4, 6, 8}².  Sensitivities are
synthetic but shaped like real ones (Ω = α·4^(−w) + β·4^(−a) with log-normal per-component α, β);
costs are the real DeiT-S shapes: size = params·w/8 bytes, BOPs = MACs·w·a, and a float,
BitFusion-like latency (MACs / ⌊8/max(a,2)⌋⌊8/max(w,2)⌋ plus a noisy memory term) to show what
unstructured float costs do.  Goal: each 2-D frontier in ≤ 2 s.  3-D frontiers grow much faster
(a surface, not a curve), so the 3-D rows use the first few blocks.

    python benchmarks/pareto_speed.py [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pmq.defaults import DEFAULT_BIT_CHOICES
from pmq.pareto import Choice, frontier

BITS = DEFAULT_BIT_CHOICES
TOKENS, DIM, MLP, HEADS, HEAD_DIM, PATCHES, PATCH_IN, CLASSES = 197, 384, 1536, 6, 64, 196, 16 * 16 * 3, 1000


def deit_small_shapes() -> dict[str, tuple[int, int]]:
    """Component -> (params, MACs) for one 224×224 image."""
    shapes = {"patch_embed.proj": (PATCH_IN * DIM, PATCHES * PATCH_IN * DIM)}
    for b in range(12):
        p = f"blocks.{b}."
        shapes[p + "attn.qkv"] = (DIM * 3 * DIM, TOKENS * DIM * 3 * DIM)
        shapes[p + "attn.matmul_qk"] = (0, HEADS * TOKENS * TOKENS * HEAD_DIM)
        shapes[p + "attn.matmul_av"] = (0, HEADS * TOKENS * TOKENS * HEAD_DIM)
        shapes[p + "attn.proj"] = (DIM * DIM, TOKENS * DIM * DIM)
        shapes[p + "mlp.fc1"] = (DIM * MLP, TOKENS * DIM * MLP)
        shapes[p + "mlp.fc2"] = (MLP * DIM, TOKENS * MLP * DIM)
    shapes["head"] = (DIM * CLASSES, DIM * CLASSES)
    return shapes


def deit_small_table(seed: int = 0) -> dict[str, list[Choice]]:
    rng = np.random.default_rng(seed)
    table = {}
    for name, (params, macs) in deit_small_shapes().items():
        alpha, beta = rng.lognormal(0.0, 1.0, size=2)
        mem = rng.uniform(0.05, 0.3)
        choices = []
        for w in BITS:
            for a in BITS:
                pf = (8 // max(a, 2)) * (8 // max(w, 2))
                latency = macs / (512 * pf) + mem * (params * w + TOKENS * DIM * a) / 24
                costs = {"size": params * w / 8, "bops": float(macs * w * a), "latency": latency}
                choices.append(Choice((w, a), alpha * 4.0**-w + beta * 4.0**-a, costs))
        table[name] = choices
    return table


def first_blocks(table: dict[str, list[Choice]], blocks: int) -> dict[str, list[Choice]]:
    """patch_embed, the first ``blocks`` blocks and the head."""
    inside = tuple(f"blocks.{b}." for b in range(blocks))
    return {
        name: rows
        for name, rows in table.items()
        if not name.startswith("blocks.") or name.startswith(inside)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    table = deit_small_table(args.seed)
    runs = [
        ("size", ("size",), None, table),
        ("bops", ("bops",), None, table),
        ("latency (float)", ("latency",), None, table),
        ("latency, resolution 1e-3", ("latency",), 1e-3, table),
        ("size + bops (3-D)", ("size", "bops"), None, first_blocks(table, 2)),
        ("size + bops (3-D)", ("size", "bops"), None, first_blocks(table, 4)),
        ("size + bops (3-D), res 1e-2", ("size", "bops"), 1e-2, first_blocks(table, 4)),
    ]
    if args.smoke:
        runs, args.repeat = runs[:1], 1
    print(f"{'objectives':<28} {'components':>10} {'choices':>7} {'frontier':>9} {'wall s':>8}  goal")
    for label, objectives, resolution, part in runs:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = frontier(part, objectives, resolution=resolution)
            best = min(best, time.perf_counter() - start)
        goal = ("ok" if best <= 2.0 else "MISSED") + " (<= 2 s)" if len(objectives) == 1 else "-"
        print(f"{label:<28} {len(part):>10} {len(part['head']):>7} {len(result):>9} {best:>8.3f}  {goal}")


if __name__ == "__main__":
    main()
