"""Which sensitivity metric ranks quantization damage like the real loss increase, and at what cost?

(a) Demo model (the bundled Fashion-MNIST checkpoint): every metric on 64 calibration images from
    the train split; the ground truth ``measured`` on ≥ 1000 held-out test images (disjoint from the
    calibration set). Per metric: wall time, passes, and Spearman rank correlation with the measured
    loss increase over all (component, operand, bits) pairs, per operand, and over the pairs whose
    measured change is above noise: |ΔL| ≥ 2·SE, SE the paired standard error over the held-out
    images (std(ℓ_q,n − ℓ_n)/√N; a ~95% two-sided test that the change is non-zero).
    A second table compares variants of the pmq metric (which Fisher, which labels, per-image or
    per-micro-batch weight gradients).
(b) Wall time of ``pmq`` vs ``hawq`` (PyHessian defaults: ≤ 100 Hutchinson samples, tol 1e-3) on
    timm deit_small_patch16_224 with random weights, a batch of 8 random 224×224 images.
    Both run on the same wrapped model with the weight-clipping caches warmed first, so neither pays
    the (shared, bits-dependent) MSE weight clipping search.

    python benchmarks/sensitivity_metrics.py [--part a|b|all] [--heldout 1000] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from pmq.data import fashion_mnist, stack_images
from pmq.io import provenance
from pmq.models import load_model
from pmq.quant import quantize_model
from pmq.sensitivity import Sensitivity, compute_sensitivity, quantize_operand
from pmq.sensitivity.cache import code_fingerprint

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)
PMQ_VARIANTS = [
    ("diagonal, labels, per-image (default)", {}),
    ("diagonal, labels, micro-batch 8", {"grad_group": 8}),
    ("diagonal, labels, whole batch (64)", {"grad_group": 64, "batch_size": 64}),
    ("diagonal, argmax labels", {"target": "argmax"}),
    ("diagonal, sampled labels", {"target": "sampled"}),
    ("outer (rank-1 per image), labels", {"fisher": "outer"}),
    ("outer, sampled labels", {"fisher": "outer", "target": "sampled"}),
    ("diagonal + first order", {"first_order": True}),
    ("outer + first order", {"fisher": "outer", "first_order": True}),
]
COLUMNS = ("| {label} | wall / CPU time (s) | passes fwd / bwd | CE: all | CE: weights | CE: activations | "
           "CE: above noise | KL: all | KL: weights | KL: activations |\n|---|---|---|---|---|---|---|---|---|---|")

Key = tuple[str, str, int]  # (operand table, component, bits)


def pairs(sens: Sensitivity) -> dict[Key, float]:
    return {(op, name, b): v for op, table in (("weights", sens.weights), ("activations", sens.activations))
            for name, row in table.items() for b, v in row.items()}


def from_details(measured: Sensitivity, entry: str) -> dict[Key, float]:
    return {(op, name, int(b)): v for op in ("weights", "activations")
            for name, row in measured.details[entry][op].items() for b, v in row.items()}


def rho(values: dict[Key, float], truth: dict[Key, float], keep=lambda key: True) -> float:
    keys = [k for k in truth if keep(k)]
    if len(keys) < 3:
        return math.nan
    return float(spearmanr([values[k] for k in keys], [truth[k] for k in keys]).statistic)


class GroundTruth:
    """Signed cross-entropy change (with its standard error) and KL(float ‖ quantized) per pair."""

    def __init__(self, measured: Sensitivity) -> None:
        self.ce, self.ce_se, self.kl = (from_details(measured, e) for e in ("signed", "stderr", "kl"))
        self.above = {k for k in self.ce if abs(self.ce[k]) >= 2 * self.ce_se[k]}

    def row(self, label: str, values: dict[Key, float], wall: str, passes: str) -> str:
        cells = []
        for truth, extra in ((self.ce, True), (self.kl, False)):
            cells += [rho(values, truth), rho(values, truth, lambda k: k[0] == "weights"),
                      rho(values, truth, lambda k: k[0] == "activations")]
            if extra:
                cells.append(rho(values, truth, lambda k: k in self.above))
        return f"| {label} | {wall} | {passes} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"


def warm_weight_quantizers(qv, bits) -> float:
    """Resolve every weight's MSE clipping at every candidate once (a quantizer cost shared by all
    metrics, cached in the quantizers), so that metric timings compare the metrics themselves."""
    start = time.perf_counter()
    for component in qv.components().values():
        if component.kind != "matmul":
            for b in bits:
                quantize_operand(component, "w", component.weight.detach(), b)
    return time.perf_counter() - start


def warm_up_passes(qv, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One untimed forward and backward, so that neither metric's time holds one-off start-up costs
    (allocator growth, kernel selection, CUDA context)."""
    device = next(qv.parameters()).device
    loss = F.cross_entropy(qv(images.to(device)), labels.to(device))
    loss.backward()
    qv.zero_grad(set_to_none=True)


def timed_row(truth: GroundTruth, label: str, sens: Sensitivity) -> str:
    return truth.row(label, pairs(sens), f"{sens.wall_time_s:.2f} / {sens.cpu_time_s:.2f}",
                     f"{sens.forward_passes:g} / {sens.backward_passes:g}")


def part_a(args: argparse.Namespace) -> None:
    bits = args.bits
    loaded = load_model("demo", args.checkpoint)
    qv = quantize_model(loaded.model)
    calib_x, calib_y = stack_images(fashion_mnist("train"), args.calibration, seed=args.seed)
    test_x, test_y = stack_images(fashion_mnist("test"), args.heldout, seed=args.seed)
    print(f"## (a) Sensitivity metrics vs the measured loss increase — {loaded.tag}\n")
    print(f"{len(qv.component_names())} components × 2 operands × bits {list(bits)}; calibration: "
          f"{args.calibration} train images (seed {args.seed}); ground truth: {args.heldout} test images; "
          f"torch threads {torch.get_num_threads()}; pmq.quant source {code_fingerprint()[:12]}; {provenance()}\n")
    warm = warm_weight_quantizers(qv, bits)
    measured = compute_sensitivity(qv, test_x, test_y, "measured", bits, cache_dir=args.cache_dir)
    truth = GroundTruth(measured)
    print(f"Ground truth: float cross-entropy {measured.details['float_loss']:.4f}; {len(truth.ce)} pairs, "
          f"{len(truth.above)} with a cross-entropy change above noise (|ΔL| ≥ 2·SE, SE the paired standard "
          f"error over the held-out images); measured in {measured.wall_time_s:.0f} s"
          f"{' (cached)' if measured.from_cache else ''}. Columns: Spearman ρ of Ω with the signed "
          "cross-entropy change (CE) and with KL(p_float ‖ p_quantized) (KL), over all pairs, per operand, "
          "and over the above-noise pairs.\n")
    print(f"Weight-clipping caches warmed first ({warm:.1f} s, not in any timing).\n")
    print(COLUMNS.format(label="metric"))
    results = {}
    for metric, options in (("pmq", {}), ("hawq", {"max_iter": args.hawq_iter}), ("nuclear", {})):
        results[metric] = compute_sensitivity(qv, calib_x, calib_y, metric, bits, use_cache=False,
                                              progress=False, **options)
        print(timed_row(truth, metric, results[metric]))
    ceiling = compute_sensitivity(qv, calib_x, calib_y, "measured", bits, cache_dir=args.cache_dir,
                                  progress=False)
    for entry, label in (("signed", "CE change"), ("kl", "KL")):
        print(truth.row(f"exact {label} on the {args.calibration} calibration images (ceiling)",
                        from_details(ceiling, entry), f"{ceiling.wall_time_s:.0f} / {ceiling.cpu_time_s:.0f}",
                        f"{ceiling.forward_passes:g} / 0"))
    print(f"\nhawq ran {results['hawq'].details['hutchinson_samples']} Hutchinson samples (PyHessian stopping rule).\n")
    print("Spearman ρ within one bit-width (every component and operand at that b), CE above noise / KL:\n")
    print("| metric | " + " | ".join(f"{b} bits" for b in bits) + " |\n|---|" + "---|" * len(bits))
    for metric, sens in results.items():
        values = pairs(sens)
        cells = [f"{rho(values, truth.ce, lambda k, b=b: k[2] == b and k in truth.above):.2f} / "
                 f"{rho(values, truth.kl, lambda k, b=b: k[2] == b):.2f}" for b in bits]
        print(f"| {metric} | " + " | ".join(cells) + " |")

    print("\n### pmq variants (same calibration images; all one forward + one backward)\n")
    print(COLUMNS.format(label="pmq variant"))
    for label, options in PMQ_VARIANTS:
        sens = compute_sensitivity(qv, calib_x, calib_y, "pmq", bits, use_cache=False, progress=False, **options)
        print(timed_row(truth, label, sens))
    print()


def part_b(args: argparse.Namespace) -> None:
    bits = args.bits
    loaded = load_model("deit_small_patch16_224")
    qv = quantize_model(loaded.model).to(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.deit_batch, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 1000, (args.deit_batch,), generator=generator)
    warm = warm_weight_quantizers(qv, bits)
    warm_up_passes(qv, images, labels)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"cpu, torch threads {torch.get_num_threads()}"
    print(f"## (b) pmq vs hawq wall time — {loaded.tag}, batch {args.deit_batch}, bits {list(bits)}, "
          f"{where}; weight-clipping caches and one forward/backward warmed first ({warm:.0f} s)\n")
    pmq = compute_sensitivity(qv, images, labels, "pmq", bits, use_cache=False, progress=False)
    runs = [("hawq (PyHessian stopping rule, tol 1e-3)", 1e-3)]
    if not args.skip_full_hawq:
        runs.append((f"hawq (all {args.hawq_iter} samples, tol 0)", 0.0))
    print("| metric | wall time (s) | CPU time (s) | passes fwd / bwd | Hutchinson samples | wall / pmq | CPU / pmq |\n"
          "|---|---|---|---|---|---|---|")
    print(f"| pmq | {pmq.wall_time_s:.1f} | {pmq.cpu_time_s:.1f} | {pmq.forward_passes:g} / "
          f"{pmq.backward_passes:g} | – | 1× | 1× |")
    for label, tol in runs:
        hawq = compute_sensitivity(qv, images, labels, "hawq", bits, use_cache=False, progress=True,
                                   max_iter=args.hawq_iter, tol=tol)
        print(f"| {label} | {hawq.wall_time_s:.1f} | {hawq.cpu_time_s:.1f} | {hawq.forward_passes:g} / "
              f"{hawq.backward_passes:g} | {hawq.details['hutchinson_samples']} | "
              f"**{hawq.wall_time_s / pmq.wall_time_s:.0f}×** | **{hawq.cpu_time_s / pmq.cpu_time_s:.0f}×** |")
        if hawq.details["hutchinson_samples"] == args.hawq_iter:
            break  # the stopping rule never fired: the full run would repeat this one
    again = compute_sensitivity(qv, images, labels, "pmq", bits, use_cache=False, progress=False)
    print(f"| pmq, again after hawq | {again.wall_time_s:.1f} | {again.cpu_time_s:.1f} | "
          f"{again.forward_passes:g} / {again.backward_passes:g} | – | – | – |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--checkpoint", default=None, help="demo checkpoint (default: the bundled one)")
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--heldout", type=int, default=1000)
    parser.add_argument("--hawq-iter", type=int, default=100, help="Hutchinson samples at most (PyHessian: 100)")
    parser.add_argument("--deit-batch", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="(b) only: torch device for the DeiT-S timing, e.g. cuda")
    parser.add_argument("--skip-full-hawq", action="store_true",
                        help="(b): skip the tol-0 run of all --hawq-iter samples when the stopping rule fires early")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bits", default=",".join(map(str, DEFAULT_BITS)), help="bit candidates, comma-separated")
    parser.add_argument("--cache-dir", default=None, help="where the measured ground truth is cached")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.part, args.calibration, args.heldout, args.hawq_iter, args.bits = "a", 64, 8, 2, "4,8"
    args.bits = tuple(int(b) for b in args.bits.split(","))
    if args.part in ("a", "all"):
        part_a(args)
    if args.part in ("b", "all"):
        part_b(args)


if __name__ == "__main__":
    main()
