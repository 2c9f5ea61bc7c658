"""hwsim speed, this tree against a baseline commit side by side: full DeiT-S event simulation per preset,
and the 74 x 25 DeiT-S cost table on bitfusion.

Goals (issue 11): event simulation of deit_small_patch16_224 at batch 1 in <= 1 s per preset, and the
cost table (all DeiT-S components x bit pairs {2,3,4,6,8}^2 through ``hwsim.estimate``, fresh
accelerator, cold caches) no slower than before the mapper searched loop orders, tiles and psum placement.
Each side runs in its own fresh interpreter (the baseline from ``git archive <ref>``), alternating,
best of ``--repeat`` runs, so both see the same machine load. Prints tables; asserts nothing.

    python benchmarks/hwsim_speed.py [--baseline 9428a76] [--repeat 3]

The DeiT-S shapes are written out here (torch-free); pmq.trace records them from a real model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import accelerators
import hwsim

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "9428a76"  # the last commit before the mapper (tiling.py ranked plans by a closed form)
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


def measure(smoke: bool = False) -> dict:
    """Times (and totals) of this interpreter's hwsim: per preset simulate / estimate, then the cost table."""
    workload, presets = deit_small(), {}
    for name in accelerators.available()[:1] if smoke else accelerators.available():
        accel = accelerators.load(name)
        start = time.perf_counter()
        result = hwsim.simulate(workload, accel)
        sim_s = time.perf_counter() - start
        start = time.perf_counter()
        hwsim.estimate_workload(workload, accel)
        presets[name] = {"ops": len(result.ops), "cycles": result.cycles, "energy_uj": result.energy_pj / 1e6,
                         "sim_s": sim_s, "estimate_s": time.perf_counter() - start}
    components = [op for op in workload.ops if isinstance(op, hwsim.Gemm)][: 3 if smoke else None]
    seconds = []
    for _ in range(2):  # a fresh interpreter's first table, then a second one (a fresh accelerator: cold caches)
        accel = accelerators.load("bitfusion")
        start = time.perf_counter()
        entries = 0
        for op, (bits_w, bits_a) in itertools.product(components, itertools.product(BITS, BITS)):
            bits_b = bits_a if op.kind == "matmul" else bits_w
            hwsim.estimate(hwsim.Gemm(op.name, op.m, op.k, op.n, bits_a, bits_b, op.count, op.kind), accel)
            entries += 1
        seconds.append(time.perf_counter() - start)
    return {"presets": presets, "table_s": seconds[0], "table_again_s": seconds[1], "components": len(components),
            "entries": entries}


def run(tree: Path, function: str = "measure") -> dict:
    """``function()`` of this module in a fresh interpreter importing hwsim from ``tree``."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}"}
    out = subprocess.run([sys.executable, "-c", f"import json, hwsim_speed; print(json.dumps(hwsim_speed.{function}()))"],
                         env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """Per timing, the fastest of the runs (totals are the same in every run)."""
    first = runs[0]
    for name, row in first["presets"].items():
        for key in ("sim_s", "estimate_s"):
            row[key] = min(r["presets"][name][key] for r in runs)
    for key in ("table_s", "table_again_s"):
        first[key] = min(r[key] for r in runs)
    return first


def measure_cost_table() -> dict:
    """This tree's cost-table path (:func:`hwsim.costtable.variant_table`, cold caches) over the DeiT-S
    components x the 25 (activation, weight) pairs: as many entries as ``measure``'s table, and more
    distinct ones (its matmuls vary B's bits too), each equal to ``hwsim.estimate`` of that variant."""
    from hwsim.costtable import variant_table

    workload = deit_small()
    names = [op.name for op in workload.ops if isinstance(op, hwsim.Gemm)]
    seconds = []
    for _ in range(2):  # as in ``measure``: the interpreter's first table, then a second (fresh accelerator)
        accel = accelerators.load("bitfusion")
        start = time.perf_counter()
        table = variant_table(workload, names, list(itertools.product(BITS, BITS)), accel)
        seconds.append(time.perf_counter() - start)
    return {"table_s": seconds[0], "table_again_s": seconds[1],
            "entries": sum(len(row) for row in table.rows.values())}


def cost_table_section(old: dict, new: dict, repeat: int) -> None:
    """The cost table three ways: the baseline's per-entry ``estimate``, this tree's, and hwsim.costtable."""
    runs = [run(ROOT, "measure_cost_table") for _ in range(repeat)]
    fast = {key: min(r[key] for r in runs) for key in ("table_s", "table_again_s")} | {"entries": runs[0]["entries"]}
    print()
    print("DeiT-S cost table on bitfusion, cold caches (fresh accelerator), best of "
          f"{repeat}: a fresh interpreter's first table, and a second one in the same interpreter (what a sweep "
          "worker pays per design); goal (issue 15): the cost-table path >= 20x faster than the baseline's")
    print(f"{'path':<44}{'entries':>8}{'first s':>9}{'vs baseline':>13}{'second s':>10}{'vs baseline':>13}")
    for label, row in (("baseline: hwsim.estimate per entry", old), ("this tree: hwsim.estimate per entry", new),
                       ("this tree: hwsim.costtable.variant_table", fast)):
        print(f"{label:<44}{row['entries']:>8}{row['table_s']:>9.3f}{old['table_s'] / row['table_s']:>12.1f}x"
              f"{row['table_again_s']:>10.3f}{old['table_again_s'] / row['table_again_s']:>12.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the old hwsim")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:  # this tree only, one preset, three components
        print(json.dumps(measure(smoke=True), indent=1))
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "baseline.tar"
        subprocess.run(["git", "archive", "-o", archive, args.baseline, "hwsim", "accelerators"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        runs = {"old": [], "new": []}
        for _ in range(args.repeat):
            runs["old"].append(run(Path(tmp)))
            runs["new"].append(run(ROOT))
    old, new = best(runs["old"]), best(runs["new"])
    print(f"DeiT-S (deit_small_patch16_224), batch 1, W8A8; old = {args.baseline}, new = this tree; "
          f"best of {args.repeat} alternating runs. Goal: event simulation <= 1 s per preset")
    print(f"{'preset':<15}{'ops':>5}{'cycles old':>12}{'cycles new':>12}{'energy uJ old':>15}{'new':>9}"
          f"{'sim s old':>11}{'new':>7}{'estimate s old':>16}{'new':>7}")
    for name, row in new["presets"].items():
        if name not in old["presets"]:  # presets added since the baseline: no old column
            continue
        was = old["presets"][name]
        print(f"{name:<15}{row['ops']:>5}{was['cycles']:>12}{row['cycles']:>12}{was['energy_uj']:>15.1f}"
              f"{row['energy_uj']:>9.1f}{was['sim_s']:>11.2f}{row['sim_s']:>7.2f}{was['estimate_s']:>16.3f}"
              f"{row['estimate_s']:>7.3f}")
    print()
    print("Cost table on bitfusion via hwsim.estimate (fresh accelerator object, cold caches); goal: new <= old")
    print(f"{'components':>11}{'bit pairs':>11}{'entries':>9}{'old s':>8}{'new s':>8}")
    print(f"{new['components']:>11}{len(BITS) ** 2:>11}{new['entries']:>9}{old['table_s']:>8.2f}{new['table_s']:>8.2f}")
    cost_table_section(old, new, args.repeat)


if __name__ == "__main__":
    main()
