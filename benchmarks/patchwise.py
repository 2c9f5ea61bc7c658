"""Patch-wise bit reallocation on the demo ViT: accuracy against ρ, hardware cost, score vs random.

Usage::

    python benchmarks/patchwise.py [--checkpoint CKPT] [--limit N] [--base W8A8] [--out DIR] [--threads 1]

Prints Markdown tables (Fashion-MNIST test set, all 10k images unless ``--limit``) and writes
``patchwise.json``, ``top1_vs_attention_bops.png`` and ``token_bits.png`` under ``--out``. Next to
top-1, every setting reports how far it moves the outputs from the base allocation's on the same
images (mean KL divergence, share of changed predictions): a paired measure with far less noise
than a top-1 difference, which is what separates the token rankings.

1. top-1 against ρ for the level sets {8,4}, {8,2}, {8,4,2}, every layer at the same setting, the
   token bits applied to the rows of Q, K, V and the attention probabilities (the default), with the
   reduction of the attention matmuls' BOPs (q·kᵀ + attn·v) against the same base allocation;
2. the importance score (class-token attention averaged over heads) against a random ranking and
   a cheaper proxy (value-vector norm) at the same ρ, also at harsher settings (2-bit, and the
   inputs of qkv / proj / fc1 / fc2 too) where the ranking matters more;
3. latency and energy of the attention part and of the whole model against the same preset's W8A8,
   on bitfusion / loom and their token-aware versions, and what stops the missed goals
   (``patchwise_hardware.goal_table``; ``python benchmarks/patchwise_hardware.py`` runs it alone, with
   the co-design sweep);
4. the per-layer Pareto search (``run_patchwise``) under a BOPs budget, and its Ω method
   (Fisher vs measured loss increase, Spearman over all layer × choice pairs);
5. a figure of a few test images with each patch coloured by its bits in each layer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from patchwise_hardware import goal_table, uniform_patchwise

import accelerators
from pmq.allocation import BitAllocation
from pmq.data import FASHION_MNIST_CLASSES, subset
from pmq.errors import PMQError
from pmq.experiment import Experiment
from pmq.io import provenance, write_json
from pmq.patchwise.maps import token_bit_maps, token_bits_record
from pmq.patchwise.search import fisher_omega, loss_omega, patchwise_choices, run_patchwise
from pmq.patchwise.spec import DEFAULT_APPLY_TO, OPERANDS, LayerSetting
from pmq.plots.style import DOUBLE_COLUMN_IN, OKABE_ITO, new_figure, save, style
from pmq.plots.tokens import save_token_bits
from pmq.trace import trace_model

LEVEL_SETS = {"8/4": ((8, 4), [0.5, 0.35, 0.25]),
              "8/2": ((8, 2), [0.5, 0.25]),
              "8/4/2": ((8, 4, 2), [(0.25, 0.5)])}
SCORES = ("cls_attention", "random", "value_norm")
PROXY_LEVELS = ("8/4",)  # the value-norm proxy is measured on this level set only (time)
HARSH = (("attention rows", DEFAULT_APPLY_TO, (8, 2), (0.1,)),  # settings that hurt: where the ranking decides
         ("all token rows", tuple(OPERANDS), (8, 4), (0.25,)),
         ("all token rows", tuple(OPERANDS), (8, 2), (0.5,)),
         ("all token rows", tuple(OPERANDS), (8, 2), (0.25,)))
def attention_bops(model, allocation: BitAllocation) -> int:
    return sum(op.bops for op in trace_model(model).workload(allocation).ops
               if ".attn.matmul_qk" in op.name or op.name.endswith(".attn.matmul_av"))


def _versus(rows: list[dict], other: str) -> str:
    """How often and by how much cls_attention keeps the outputs closer to the base than ``other``."""
    kl = sum(r["cls_attention"]["kl"] < r[other]["kl"] for r in rows)
    top1 = sum(r["cls_attention"]["top1"] >= r[other]["top1"] for r in rows)
    ratio = np.exp(np.mean([np.log(r[other]["kl"] / r["cls_attention"]["kl"]) for r in rows]))
    return (f"cls_attention vs {other}: lower KL in {kl}/{len(rows)} settings ({other}'s KL is {ratio:.2f}× "
            f"cls_attention's, geometric mean), top-1 at least as high in {top1}/{len(rows)}.")


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def pct(new: float, old: float) -> str:
    return f"{100 * (new / old - 1):+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--limit", type=int, help="test images of the sweep (default: all 10k)")
    parser.add_argument("--base", default="W8A8", help="base allocation (uniform setting)")
    parser.add_argument("--budget", default="0.96x", help="BOPs budget of the Pareto search, relative to the base")
    parser.add_argument("--out", type=Path, default=Path("results/patchwise"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a crowded machine)")
    parser.add_argument("--replot", type=Path, metavar="JSON", help="redraw the sweep figure from a saved patchwise.json")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit = 16
    if args.replot:
        saved = json.loads(args.replot.read_text())
        print("wrote", *plot_sweep(saved["sweep"], saved["base_top1"], args.out))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    experiment = Experiment("demo", args.checkpoint, data_dir=args.data)
    model, names = experiment.loaded.model, experiment.component_names
    base = BitAllocation.uniform(args.base, names)
    report: dict = {"model": experiment.loaded.tag, "base": args.base, "limit": args.limit,
                    "provenance": provenance(model_tag=experiment.loaded.tag)}

    experiment.calibrate()
    loader = torch.utils.data.DataLoader(subset(experiment.test_set, args.limit), batch_size=500)
    test_images, test_labels = (torch.cat(t) for t in zip(*loader, strict=True))

    def logits_of(allocation: BitAllocation) -> torch.Tensor:
        qv = experiment.qv.apply(allocation).eval()
        with torch.no_grad():
            return torch.cat([qv(batch) for batch in test_images.split(250)])

    base_logits = logits_of(base)
    base_top1 = float((base_logits.argmax(-1) == test_labels).float().mean())
    base_log_probs = base_logits.log_softmax(-1)
    base_attn = attention_bops(model, base)

    def measure(allocation: BitAllocation) -> dict[str, float]:
        """top-1, and how far the outputs move from the base allocation's on the same images: mean
        KL(base ‖ patch-wise) and the share of changed predictions (far less noisy than top-1)."""
        logits = logits_of(allocation)
        kl = F.kl_div(logits.log_softmax(-1), base_log_probs, log_target=True, reduction="batchmean")
        return {"top1": float((logits.argmax(-1) == test_labels).float().mean()), "kl": float(kl),
                "flips": float((logits.argmax(-1) != base_logits.argmax(-1)).float().mean())}

    def cells(row: dict) -> str:
        return " | ".join(f"{100 * row[s]['top1']:.2f} ({100 * (row[s]['top1'] - base_top1):+.2f}) | "
                          f"{1e3 * row[s]['kl']:.2f} / {100 * row[s]['flips']:.2f}" if s in row else "– | –"
                          for s in SCORES)

    header = " | ".join(f"top-1 {s} (Δ) | KL·10³ / flips % {s}" for s in SCORES)
    report["base_top1"] = base_top1
    print(f"# Patch-wise on {experiment.loaded.tag}, base {args.base} (top-1 {100 * base_top1:.2f}% on "
          f"{len(test_labels)} test images)\n")
    print("KL·10³: mean KL divergence of the output from the base allocation's (×1000); flips: share of "
          "test images whose prediction changes. Same images for every column.\n")

    # 1 + 2: top-1 against ρ per level set and score
    print("## 1. Top-1 against ρ (every layer at the same setting; token bits on the Q, K, V and "
          "attention-probability rows)\n")
    print(f"| levels | ρ | attention BOPs | {header} |")
    print("|---|---|---|" + "---|---|" * len(SCORES))
    sweep = []
    for label, (levels, rhos) in LEVEL_SETS.items():
        for rho in rhos:
            setting = LayerSetting(rho if isinstance(rho, tuple) else (rho,), levels)
            row = {"levels": label, "rho": list(setting.rho),
                   "attn_bops_change": attention_bops(model, uniform_patchwise(base, setting)) / base_attn - 1}
            for score in SCORES:
                if score != "value_norm" or label in PROXY_LEVELS:
                    row[score] = measure(uniform_patchwise(base, setting, score))
            sweep.append(row)
            print(f"| {label} | {'/'.join(f'{r:g}' for r in setting.rho)} | {100 * row['attn_bops_change']:+.1f}% "
                  f"| {cells(row)} |", flush=True)
    report["sweep"] = sweep
    good = [r for r in sweep if r["cls_attention"]["top1"] >= base_top1 - 0.005 and r["attn_bops_change"] <= -0.40]
    print(f"\nSettings with ≥ 40% fewer attention BOPs at ≤ 0.5 point top-1 loss: "
          f"{', '.join(r['levels'] + ' ρ=' + '/'.join(f'{x:g}' for x in r['rho']) for r in good) or 'none'}. "
          + _versus(sweep, "random") + " " + _versus([r for r in sweep if "value_norm" in r], "value_norm") + "\n")

    print("## 1b. Harsher settings: where the ranking decides\n")
    print(f"| operands | setting | attention BOPs | model BOPs | {header} |")
    print("|---|---|---|---|" + "---|---|" * len(SCORES))
    base_bops = sum(op.bops for op in trace_model(model).workload(base).ops)
    harsh = []
    for label, apply_to, levels, rho in HARSH:
        setting = LayerSetting(rho, levels)
        shown = uniform_patchwise(base, setting, apply_to=apply_to)
        row = {"operands": label, "setting": str(setting),
               "attn_bops_change": attention_bops(model, shown) / base_attn - 1,
               "model_bops_change": sum(op.bops for op in trace_model(model).workload(shown).ops) / base_bops - 1}
        for score in SCORES:
            row[score] = measure(uniform_patchwise(base, setting, score, apply_to))
        harsh.append(row)
        print(f"| {label} | {setting} | {100 * row['attn_bops_change']:+.1f}% | {100 * row['model_bops_change']:+.1f}% "
              f"| {cells(row)} |", flush=True)
    report["harsh"] = harsh
    print("\n" + _versus(harsh, "random") + " " + _versus(harsh, "value_norm") + "\n")

    # 3: hardware
    print("## 2. Hardware: attention part and whole model, with and without patch-wise\n")
    goal_table(report)

    # 4: Pareto search and its Ω
    print(f"\n## 3. Per-layer Pareto search (BOPs budget {args.budget} of the base)\n")
    accel = accelerators.load("bitfusion")
    search = run_patchwise(experiment, base, accel, "bops", args.budget, limit=args.limit, progress=False)
    s = search.summary.to_dict()
    chosen_attn = attention_bops(model, search.allocation)
    print(f"chosen: {s['layers'] or 'no layer'}; top-1 {100 * s['top1']:.2f}% (base {100 * s['base_top1']:.2f}%), "
          f"attention BOPs {pct(chosen_attn, base_attn)}, model BOPs {pct(s['cost'], s['base_cost'])}, "
          f"Ω by {s['omega_method']} on {s['omega_images']} images in {s['omega_s']:.2f} s, "
          f"frontier of {s['frontier_points']} points\n")
    report["search"] = {**{k: v for k, v in s.items() if k != "layers"}, "layers": s["layers"],
                        "attn_bops_change": chosen_attn / base_attn - 1}
    qv = experiment.qv.apply(base)
    calib, labels = experiment.calibration_set
    calib, labels = calib[:64], labels[:64]
    choices = patchwise_choices(((8, 4), (8, 2)), (1.0, 0.75, 0.5, 0.25))
    t0 = time.perf_counter()
    fisher = fisher_omega(qv, calib, labels, choices)
    fisher_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    measured = loss_omega(qv, calib, labels, choices)
    loss_s = time.perf_counter() - t0
    keys = [(layer, c.key) for layer in fisher for c in choices if any(r < 1 for r in c.rho)]
    rho_f = spearman([fisher[name][k] for name, k in keys], [measured[name][k] for name, k in keys])
    print(f"Ω methods over {len(keys)} layer × choice pairs on 64 calibration images: Fisher {fisher_s:.2f} s, "
          f"measured loss increase {loss_s:.2f} s; Spearman {rho_f:.3f}\n")
    report["omega_methods"] = {"pairs": len(keys), "fisher_s": fisher_s, "loss_s": loss_s, "spearman": rho_f}

    # figures
    args.out.mkdir(parents=True, exist_ok=True)
    plot_sweep(sweep, base_top1, args.out)
    test = experiment.test_set
    picks = [test[i] for i in range(4)]
    shown = uniform_patchwise(base, LayerSetting((0.25, 0.5), (8, 4, 2)))
    maps = token_bit_maps(experiment.qv, torch.stack([p[0] for p in picks]), shown, operand="q",
                          labels=torch.tensor([int(p[1]) for p in picks]))
    save_token_bits(token_bits_record(maps, list(FASHION_MNIST_CLASSES)), args.out / "token_bits.png",
                    max_layers=len(maps.layers))
    report["wall_s"] = time.perf_counter() - start
    write_json(args.out / "patchwise.json", report)
    print(f"wrote {args.out}/patchwise.json, top1_vs_attention_bops.png/pdf, token_bits.png "
          f"({report['wall_s']:.0f} s)")
    return 0


def _component_names(model) -> list[str]:
    return trace_model(model).component_names


SWEEP_COLOURS = {"8/4": OKABE_ITO["blue"], "8/2": OKABE_ITO["vermillion"], "8/4/2": OKABE_ITO["green"]}
SCORE_LOOK = {"cls_attention": ("o", "-", "class-token score"), "random": ("x", ":", "random tokens"),
              "value_norm": ("^", "--", "value norm")}


def plot_sweep(sweep: list[dict], base_top1: float, out: Path) -> list[Path]:
    """Top-1 and KL from the base's outputs against the attention BOPs saved, per level set and score."""
    with style():
        fig = new_figure(DOUBLE_COLUMN_IN, 2.5)
        axes = fig.subplots(1, 2)
        for levels, colour in SWEEP_COLOURS.items():
            rows = sorted((r for r in sweep if r["levels"] == levels), key=lambda r: -r["attn_bops_change"])
            for score, (marker, line, name) in SCORE_LOOK.items():
                if rows and all(score in r for r in rows):
                    xs = [-100 * r["attn_bops_change"] for r in rows]
                    axes[0].plot(xs, [100 * r[score]["top1"] for r in rows], marker=marker, linestyle=line,
                                 color=colour, label=f"{levels}, {name}")
                    axes[1].plot(xs, [1e3 * r[score]["kl"] for r in rows], marker=marker, linestyle=line,
                                 color=colour)
        axes[0].axhline(100 * base_top1, color="black", linewidth=0.8)
        axes[0].axhline(100 * base_top1 - 0.5, color="black", linewidth=0.8, linestyle="--")
        for value, text in ((100 * base_top1, "base"), (100 * base_top1 - 0.5, "base − 0.5")):
            axes[0].annotate(text, (0.0, value), xycoords=("axes fraction", "data"), xytext=(14, 2),
                             textcoords="offset points", fontsize=6)
        axes[0].set_ylabel("top-1 (%)")
        axes[1].set_yscale("log")
        axes[1].set_ylabel("KL from the base's outputs (×10⁻³)")
        for ax in axes:
            ax.axvline(40, color="0.5", linewidth=0.8, linestyle="--")
            ax.set_xlabel("attention BOPs saved (%), q·kᵀ + attn·v")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
        return save(fig, [out / f"top1_vs_attention_bops.{fmt}" for fmt in ("png", "pdf")])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PMQError as exc:
        sys.stderr.write(f"patchwise benchmark: error: {exc}\n")
        sys.exit(2)
