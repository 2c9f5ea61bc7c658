"""DeiT-S cycles, DRAM traffic and energy on every accelerator preset at W8A8, W4A4, W2A2 (README table).

Shapes come from a real forward of timm's deit_small_patch16_224 (weights don't change shapes, so
random init is used); every component (incl. both attention matmuls) runs at the setting. Each
mapping in ``MAPPINGS`` gets its own columns (the default: the search mapper by cycles; a reference
simulator's replayed mapping is another entry). ``--baseline REF`` adds the same figures from an
older commit of hwsim/accelerators/pmq (run from ``git archive REF`` in a fresh interpreter), side by side.

    python benchmarks/accelerator_table.py [--model deit_small_patch16_224] [--batch 1] [--baseline 9428a76]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import accelerators
import hwsim

SETTINGS = ("W8A8", "W4A4", "W2A2")
BASELINE = "int8_systolic"
ROOT = Path(__file__).resolve().parents[1]


def mappings() -> dict:
    """Column groups: name -> mapper passed to ``hwsim.simulate`` (None: the simulator's default)."""
    search = getattr(hwsim, "SearchMapper", None)  # absent in a baseline from before the mapper
    return {"mapper": search() if search else None}


def results(model_name: str, batch: int) -> dict:
    """{setting: {preset: {mapping: {cycles, dram_mbit, energy_mj, latency_ms, utilization, peak}}}}."""
    import timm

    from pmq.allocation import BitAllocation, Bits
    from pmq.trace import trace_model

    trace = trace_model(timm.create_model(model_name, pretrained=False).eval(), batch=batch)
    names = trace.component_names
    table: dict = {}
    for setting in SETTINGS:
        workload = trace.workload(BitAllocation.uniform(setting, names))
        bits = Bits.parse(setting)
        probe = hwsim.Gemm("probe", m=256, k=256, n=256, bits_a=bits.a, bits_b=bits.w)
        for preset in accelerators.available():
            accel = accelerators.load(preset)
            for label, mapper in mappings().items():
                r = hwsim.simulate(workload, accel, mapper) if mapper else hwsim.simulate(workload, accel)
                table.setdefault(setting, {}).setdefault(preset, {})[label] = {
                    "cycles": r.cycles, "latency_ms": 1e3 * r.latency_s, "energy_mj": r.energy_pj / 1e9,
                    "dram_mbit": (r.dram_read_bits + r.dram_write_bits) / 1e6, "utilization": r.utilization,
                    "peak": accel.array.peak_macs_per_cycle(probe)}
    return table


def baseline_results(ref: str, model_name: str, batch: int) -> dict:
    """:func:`results` with hwsim, accelerators and pmq from commit ``ref``."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "baseline.tar"
        subprocess.run(["git", "archive", "-o", archive, ref, "hwsim", "accelerators", "pmq"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT / 'benchmarks'}"}
        code = f"import json, accelerator_table as t; print(json.dumps(t.results({model_name!r}, {batch})))"
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True, text=True,
                             check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--baseline", help="git ref of an older hwsim to show side by side")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.model = "vit_tiny_patch16_224"
    new = results(args.model, args.batch)
    old = baseline_results(args.baseline, args.model, args.batch) if args.baseline else None
    labels = list(mappings())
    presets = sorted(accelerators.available(), key=lambda p: (p != BASELINE, p))
    print(f"{args.model}, batch {args.batch}, event simulation (hwsim.simulate)"
          + (f"; 'before' = commit {args.baseline}" if old else "") + "\n")
    head = ["setting", "accelerator", "peak MACs/cycle"]
    for label in labels:
        head += [f"{label}: cycles", "latency (ms)", "DRAM (Mbit)", "energy (mJ)", "utilisation",
                 "speedup vs int8", "energy saving vs int8"]
    if old:
        head += ["before: cycles", "before: DRAM (Mbit)", "before: energy (mJ)"]
    print("| " + " | ".join(head) + " |")
    print("|---|---|" + "---:|" * (len(head) - 2))
    for setting in SETTINGS:
        for preset in presets:
            row = new[setting][preset]
            cells = [setting, preset, f"{row[labels[0]]['peak']:,.0f}"]
            for label in labels:
                r, base = row[label], new[setting][BASELINE][label]
                cells += [f"{r['cycles']:,}", f"{r['latency_ms']:.3f}", f"{r['dram_mbit']:.1f}", f"{r['energy_mj']:.3f}",
                          f"{100 * r['utilization']:.1f}%", f"{base['cycles'] / r['cycles']:.2f}x",
                          f"{base['energy_mj'] / r['energy_mj']:.2f}x"]
            if old:
                was = next(iter(old[setting][preset].values()))
                cells += [f"{was['cycles']:,}", f"{was['dram_mbit']:.1f}", f"{was['energy_mj']:.3f}"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
