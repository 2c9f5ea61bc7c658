"""DeiT-S cycles, DRAM traffic and energy on every accelerator preset at W8A8, W4A4, W2A2 (README table).

Shapes come from a real forward of timm's deit_small_patch16_224 (weights don't change shapes, so
random init is used); every component (incl. both attention matmuls) runs at the setting. Each
mapping in ``MAPPINGS`` gets its own columns (the default: the search mapper by cycles; a reference
simulator's replayed mapping is another entry). The README's "before" columns were printed by this
script's ``--baseline 9428a76`` at commit 8ce0415; that option priced an old tree with its own model
tracer, which the one tracer (pmq.trace) replaced, so it is gone.

    python benchmarks/accelerator_table.py [--model deit_small_patch16_224] [--batch 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import accelerators
import hwsim

SETTINGS = ("W8A8", "W4A4", "W2A2")
BASELINE = "int8_systolic"
ROOT = Path(__file__).resolve().parents[1]


def mappings() -> dict:
    """Column groups: name -> mapper passed to ``hwsim.simulate``."""
    return {"mapper": hwsim.SearchMapper()}


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
                r = hwsim.simulate(workload, accel, mapper)
                table.setdefault(setting, {}).setdefault(preset, {})[label] = {
                    "cycles": r.cycles, "latency_ms": 1e3 * r.latency_s, "energy_mj": r.energy_pj / 1e9,
                    "dram_mbit": (r.dram_read_bits + r.dram_write_bits) / 1e6, "utilization": r.utilization,
                    "peak": accel.array.peak_macs_per_cycle(probe)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.model = "vit_tiny_patch16_224"
    new = results(args.model, args.batch)
    labels = list(mappings())
    presets = sorted(accelerators.available(), key=lambda p: (p != BASELINE, p))
    print(f"{args.model}, batch {args.batch}, event simulation (hwsim.simulate)\n")
    head = ["setting", "accelerator", "peak MACs/cycle"]
    for label in labels:
        head += [f"{label}: cycles", "latency (ms)", "DRAM (Mbit)", "energy (mJ)", "utilisation",
                 "speedup vs int8", "energy saving vs int8"]
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
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
