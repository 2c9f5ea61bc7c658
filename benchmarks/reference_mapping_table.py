"""DeiT-S on every preset with hwsim's mapper vs with the preset's reference simulator's mapping (README).

Shapes come from a real forward of timm's deit_small_patch16_224 (random init: weights don't change
shapes); every component runs at the setting. Both columns are priced by the same cost model
(``hwsim.estimate_workload``, equal to the event simulation); only the mapping differs: ``search``
is :class:`hwsim.SearchMapper`, ``reference`` is :class:`hwsim.ReferenceMapper` (BitFusion's
simulator's tiling for ``bitfusion``, SCALE-Sim's folds, ports and prefetch windows for
``int8_systolic``; Stripes/Loom have no reference simulator to replay). Where the mapper is more than 10% faster, the second table names
the reference's DRAM traffic it avoids (totals over the network's GEMMs).

    python benchmarks/reference_mapping_table.py [--batch 1]
"""

from __future__ import annotations

import argparse

import timm

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.trace import trace_model

SETTINGS = ("W8A8", "W4A4", "W2A2")
MBIT = 1e6


def avoided_traffic(workload: hwsim.Workload, accel: hwsim.Accelerator) -> dict[str, float]:
    """The reference's DRAM traffic by kind (Mbit): one pass of A and B, their re-fetches, the psum
    loads, and the outputs written back (at the reference's width, per fold where it writes psums)."""
    kinds = dict.fromkeys(("A and B once", "A/B re-fetched", "psum loads", "outputs written"), 0.0)
    for op in workload.ops:
        if not isinstance(op, hwsim.Gemm):
            continue
        plan = hwsim.ReferenceMapper().plan(op, accel)
        moved = plan.dram_bits()
        once = op.m * op.k * accel.memory.storage_bits(op.bits_a, "a") + op.k * op.n * accel.memory.storage_bits(
            op.bits_b, "b")
        kinds["A and B once"] += op.count * once / MBIT
        kinds["A/B re-fetched"] += op.count * max(0, moved["a"] + moved["b"] - once) / MBIT
        kinds["psum loads"] += op.count * moved["psum"] / MBIT
        kinds["outputs written"] += op.count * moved["out"] / MBIT
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.model = "vit_tiny_patch16_224"
    trace = trace_model(timm.create_model(args.model, pretrained=False).eval(), batch=args.batch)
    names = trace.component_names
    presets = accelerators.available()
    print(f"{args.model}, batch {args.batch}, hwsim.estimate_workload (same cycles as hwsim.simulate)\n")
    print("| setting | accelerator | cycles: mapper | cycles: reference | DRAM Mbit: mapper | DRAM Mbit: reference "
          "| energy mJ: mapper | energy mJ: reference | mapper faster by |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    gaps = []
    for setting in SETTINGS:
        workload = trace.workload(BitAllocation.uniform(setting, names))
        for preset in presets:
            accel = accelerators.load(preset)
            ours = hwsim.estimate_workload(workload, accel)
            dram = (ours.dram_read_bits + ours.dram_write_bits) / MBIT
            if accel.kind not in hwsim.reference.REFERENCES:
                print(f"| {setting} | {preset} | {ours.cycles:,} | — | {dram:,.1f} | — | {ours.energy_pj / 1e9:.3f} | — | — |")
                continue
            ref = hwsim.estimate_workload(workload, accel, mapper=hwsim.ReferenceMapper())
            ref_dram = (ref.dram_read_bits + ref.dram_write_bits) / MBIT
            gain = ref.cycles / ours.cycles - 1
            print(f"| {setting} | {preset} | {ours.cycles:,} | {ref.cycles:,} | {dram:,.1f} | {ref_dram:,.1f} "
                  f"| {ours.energy_pj / 1e9:.3f} | {ref.energy_pj / 1e9:.3f} | {100 * gain:+.0f}% |")
            if gain > 0.10:
                gaps.append((setting, preset, dram, avoided_traffic(workload, accel)))
    if gaps:
        print("\nWhere the mapper is >10% faster: the reference mapping's DRAM traffic (Mbit) vs the mapper's total\n")
        kinds = list(gaps[0][3])
        print("| setting | accelerator | " + " | ".join(f"reference: {k}" for k in kinds) + " | mapper: all DRAM |")
        print("|---|---|" + "---:|" * (len(kinds) + 1))
        for setting, preset, dram, traffic in gaps:
            print(f"| {setting} | {preset} | " + " | ".join(f"{traffic[k]:,.1f}" for k in kinds) + f" | {dram:,.1f} |")


if __name__ == "__main__":
    main()
