"""DeiT-S latency and energy on every accelerator preset at W8A8, W4A8, W4A4 (README table).

Shapes come from a real forward of timm's deit_small_patch16_224 (weights don't change shapes, so
random init is used); every component (incl. both attention matmuls) runs at the setting.

    python benchmarks/accelerator_table.py [--model deit_small_patch16_224] [--batch 1]
"""

from __future__ import annotations

import argparse

import timm

import accelerators
import hwsim
from pmq.allocation import BitAllocation, Bits
from pmq.trace import trace_model

SETTINGS = ("W8A8", "W4A8", "W4A4")
BASELINE = "int8_systolic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    model = timm.create_model(args.model, pretrained=False).eval()
    trace = trace_model(model, batch=args.batch)
    names = trace.component_names
    presets = sorted(accelerators.available(), key=lambda p: (p != BASELINE, p))
    results = {}
    for setting in SETTINGS:
        workload = trace.workload(BitAllocation.uniform(setting, names))
        for preset in presets:
            results[setting, preset] = hwsim.simulate(workload, accelerators.load(preset))
    print(f"{args.model}, batch {args.batch}, event simulation (hwsim.simulate)\n")
    print("| setting | accelerator | peak MACs/cycle | cycles | latency (ms) | energy (mJ) | DRAM (Mbit) "
          "| utilisation | speedup vs int8 | energy saving vs int8 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for setting in SETTINGS:
        base = results[setting, BASELINE]
        bits = Bits.parse(setting)
        probe = hwsim.Gemm("probe", m=256, k=256, n=256, bits_a=bits.a, bits_b=bits.w)
        for preset in presets:
            r = results[setting, preset]
            peak = accelerators.load(preset).array.peak_macs_per_cycle(probe)
            dram = (r.dram_read_bits + r.dram_write_bits) / 1e6
            print(f"| {setting} | {preset} | {peak:,.0f} | {r.cycles:,} | {1e3 * r.latency_s:.3f} | {r.energy_pj / 1e9:.3f} "
                  f"| {dram:.1f} | {100 * r.utilization:.1f}% | {base.latency_s / r.latency_s:.2f}x "
                  f"| {base.energy_pj / r.energy_pj:.2f}x |")


if __name__ == "__main__":
    main()
