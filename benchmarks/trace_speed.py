"""Trace speed and what one trace prices, per timm model (random weights), beside FlopCounterMode.

For each model: components (GEMM-like ops the quantized wrapper covers), GMACs from the trace and
from ``torch.utils.flop_counter.FlopCounterMode`` (the peer; counted under the MATH SDPA backend, the
only one whose attention it sees), W8A8 / W4A4 GBOPs, simulated latency (``hwsim.simulate``) at W8A8
and W4A4 on two presets, and the wall time of one trace next to one FlopCounterMode forward.

    python benchmarks/trace_speed.py                       # the five models of the README table
    python benchmarks/trace_speed.py --models resnet18     # any timm names
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.trace import trace_model

MODELS = ("deit_small_patch16_224", "vit_base_patch16_224", "swin_tiny_patch4_window7_224", "resnet18",
          "convnext_atto")
PRESETS = ("bitfusion", "stripes")


def flop_counter(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[float, float]:
    """(GMACs, seconds) of one FlopCounterMode forward."""
    counter = FlopCounterMode(display=False)
    start = time.perf_counter()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() / 2e9, time.perf_counter() - start


def row(name: str) -> str:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        model(torch.zeros(1, *model.pretrained_cfg["input_size"]))  # warm-up: first-call allocations
    trace = trace_model(model, name=name)
    peer_gmacs, peer_s = flop_counter(model, trace.input_shape)
    names = trace.component_names
    cells = [name, str(len(names)), f"{trace.macs / 1e9:.3f}", f"{peer_gmacs:.3f}"]
    for setting in ("W8A8", "W4A4"):
        cells.append(f"{trace.bops(BitAllocation.uniform(setting, names)) / 1e9:.1f}")
    for preset in PRESETS:
        accel = accelerators.load(preset)
        for setting in ("W8A8", "W4A4"):
            result = hwsim.simulate(trace.workload(BitAllocation.uniform(setting, names)), accel)
            cells.append(f"{1e3 * result.latency_s:.2f}")
    cells += [f"{trace.trace_s:.2f}", f"{peer_s:.2f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="timm model names")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.models = ["resnet18"]
    latency = [f"{p} {s} ms" for p in PRESETS for s in ("W8A8", "W4A4")]
    header = ["model", "components", "GMACs (trace)", "GMACs (FlopCounterMode)", "GBOPs W8A8", "GBOPs W4A4",
              *latency, "trace s", "FlopCounterMode s"]
    print(f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} threads; batch 1, "
          "random weights; BOPs with float operands at 16 bits")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.models:
        print(row(name), flush=True)


if __name__ == "__main__":
    main()
