"""Size-dependent SRAM (hwsim.sram) on the example sweep: energy and area per point with and without it.

First the committed CACTI table against Horowitz's published 45 nm SRAM reads, then every point of
``examples/sweep_space.yaml`` on the demo model priced twice: with ``sram.table: constant`` (the
per-bit energy of the preset at any size, area linear in KiB: hwsim before issue 15) and with the
CACTI table (``cacti_45nm``, the default). Latency and the chosen allocations do not depend on SRAM
energy, so top-1 is the same either way and is not re-evaluated. Run:
``python benchmarks/sram_sweep.py`` (torch for the demo model's Ω, cached).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import accelerators
from hwsim import sram

ROOT = Path(__file__).resolve().parents[1]
HOROWITZ_64BIT_READ_PJ = {8192: 10.0, 32768: 20.0, 1 << 20: 100.0}  # ISSCC 2014, 45 nm (REFERENCE §5)


def table_vs_horowitz() -> None:
    table = sram.load_table(sram.DEFAULT_TABLE)
    print(f"SRAM table {table.name}: {table.note}")
    print(f"{'capacity':>10}{'CACTI 64-bit read pJ':>22}{'Horowitz pJ':>13}{'ratio':>7}{'area mm2':>10}")
    for capacity, published in HOROWITZ_64BIT_READ_PJ.items():
        read, _, area = table.array(capacity, 64, 1)
        print(f"{capacity // 1024:>8}KB{read:>22.1f}{published:>13.0f}{read / published:>7.2f}{area:>10.3f}")
    base = accelerators.load("bitfusion")
    stated = base.sram_energy.read_pj_per_bit["filter"]
    print("bitfusion weight buffer (512 banks of 32-bit words): read pJ/bit relative to the stated 64 KB")
    for kib in (16, 32, 64, 128, 256):
        config = copy.deepcopy(base.config)
        config["buffers"]["filter"] = kib * 1024
        scaled = accelerators.from_dict(config).sram_energy.read_pj_per_bit["filter"]
        print(f"{kib:>8}KB{scaled:>10.4f} pJ/bit{scaled / stated:>7.2f}x")


def example_sweep() -> None:
    from pmq.experiment import Experiment
    from pmq.sweep import load_space
    from pmq.sweep.pricing import PricingInputs, price_design
    from pmq.sweep.run import model_inputs

    space = load_space(ROOT / "examples" / "sweep_space.yaml")
    inputs = model_inputs(Experiment("demo", calibration_images=256))
    pricing = PricingInputs(tuple(inputs.component_names), inputs.omega, inputs.workload, space.objective,
                            tuple(space.budgets))
    print()
    print(f"examples/sweep_space.yaml on the demo model, objective {space.objective}: per point, "
          "energy and area with sram.table constant (before) and cacti_45nm (after)")
    print(f"{'design':<48}{'budget':>11}{'latency ms':>11}{'energy uJ':>11}{'after':>8}{'area mm2':>10}{'after':>8}")
    for design in space.designs:
        constant = copy.deepcopy(design.config)
        constant["sram"] = {**constant["sram"], "table": sram.CONSTANT}
        before = price_design(pricing, design.id, constant)
        after = price_design(pricing, design.id, design.config)
        label = f"{design.base} " + " ".join(f"{key.split('.')[-1]}={value}" for key, value in design.params.items())
        for was, now in zip(before, after, strict=True):
            if now["status"] != "ok":
                print(f"{label:<48}{now['budget']:>11}  {now['error'][:60]}")
                continue
            assert was["allocation"] == now["allocation"] and was["latency_s"] == now["latency_s"]
            print(f"{label:<48}{now['budget']:>11}{now['latency_s'] * 1e3:>11.3f}{was['energy_pj'] / 1e6:>11.2f}"
                  f"{now['energy_pj'] / 1e6:>8.2f}{was['area_mm2']:>10.3f}{now['area_mm2']:>8.3f}")
    stated = accelerators.load("bitfusion").config["sram"]["stated_at"]
    sizes = ", ".join(f"{buffer} {geometry['bytes']} B" for buffer, geometry in stated.items())
    print(f"(bitfusion figures are stated at {sizes})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the CACTI table only, to check the script runs (the test suite does)")
    table_vs_horowitz()
    if not parser.parse_args().smoke:  # the example sweep prices every point twice (minutes)
        example_sweep()
