"""Patch-wise on hardware: plain vs token-aware presets, the goal, what stops it, and the co-design sweep.

Usage::

    python benchmarks/patchwise_hardware.py [--out DIR] [--replot JSON]

1. Goal table: DeiT-S (batch 1 and 16) and the demo ViT at ρ = 0.5 @ 8/4, ρ = 0.5 @ 8/2 and
   ρ = 0.25/0.5 @ 8/4/2 (token bits on the q, k, v and attention-probability rows), attention latency
   and energy (q·kᵀ with its class rows, softmax, attn·v, token scoring and regrouping) and model
   latency and energy against the same preset's W8A8 base, on bitfusion / loom and their token-aware
   versions (``*_tokens``: the same facts plus the hardware of :mod:`hwsim.tokens`). Goal: attention
   latency ≥ 25% and energy ≥ 20% lower.
2. Where a goal is missed: the per-op breakdown of the attention (base → patch-wise) and the cost
   that stops it, with the capability that would remove it.
3. Co-design: attention latency, energy and latency × area of plain and token-aware presets against ρ
   (levels 8/4 and 8/2) and sequence length (DeiT-S at 224 and 384 pixels: 197 and 577 tokens),
   relative to the plain preset's W8A8; the token-aware area pays for itself where its latency × area
   falls below the plain preset's best.

Every number is ``hwsim.estimate`` (the closed form of the event simulation, within 5% of it) of the
workload ``pmq.trace`` records from the real timm model.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import timm

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.io import provenance, write_json
from pmq.models import create_demo_vit
from pmq.patchwise.spec import DEFAULT_APPLY_TO, LayerSetting, PatchwiseSpec
from pmq.plots.style import DOUBLE_COLUMN_IN, OKABE_ITO, new_figure, save, style
from pmq.trace import ModelTrace, trace_model

PAIRS = (("bitfusion", "bitfusion_tokens"), ("loom", "loom_tokens"))
WHAT_IF = {  # a design change beyond the token capabilities that removes a blocker: measured, never a preset
    "bitfusion_tokens": ("+ on-chip output requant (what-if)", ("memory", "output_bits"), "op"),
}
GOAL_SETTINGS = (LayerSetting((0.5,), (8, 4)), LayerSetting((0.5,), (8, 2)), LayerSetting((0.25, 0.5), (8, 4, 2)))
GOAL = {"latency": 0.25, "energy": 0.20}
GOAL_RUNS = (("deit_s", "deit_small_patch16_224", 1), ("deit_s", "deit_small_patch16_224", 16), ("demo", None, 1))
SEQUENCES = (("224 px, 197 tokens", 224), ("384 px, 577 tokens", 384))  # DeiT-S at these image sizes
SWEEP_RHOS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1)
SWEEP_LEVELS = ((8, 4), (8, 2))
ATTENTION = (".attn.matmul_qk", ".attn.softmax", ".attn.matmul_av", ".attn.token_score", ".attn.regroup")
REMEDY = {  # the capability that would remove an attention op's remaining cost, by op and what dominates it
    ("softmax", "cycles"): "more vector lanes, or a sub-word vector unit where the preset has none (demoted "
                           "probability rows at 2 per lane-cycle at 4 bits, 4 at 2 bits)",
    ("softmax", "dram"): "softmax fused on q·kᵀ's output buffer (scores never leave the chip) writing probability "
                         "rows at their group's bits",
    ("matmul_qk", "dram"): "q·kᵀ scores kept on chip for a fused softmax (their write-back does not shrink with the "
                           "token bits) or, at least, outputs requantized on chip instead of written at the psum width",
    ("matmul_qk", "cycles"): "outputs requantized on chip, or scores kept on chip for a fused softmax (q·kᵀ waits "
                             "on writing its scores back, whatever the token bits)",
    ("matmul_av", "dram"): "attention probabilities stored at their row group's bits (requantized on the softmax's "
                           "write path, not on attn·v's load path)",
    ("matmul_av", "sram"): "attention probabilities stored at their row group's bits (requantized on the softmax's "
                           "write path), so attn·v reads demoted rows from the on-chip memory at their own width",
    ("matmul_qk", "sram"): "q / k rows stored at their group's bits on chip (requantized when written, not when read)",
    ("class_rows", "dram"): "the class row scored on qkv's write-back (k is not read a second time)",
}


def uniform_patchwise(base: BitAllocation, setting: LayerSetting | None, score: str = "cls_attention",
                      apply_to: tuple[str, ...] = DEFAULT_APPLY_TO) -> BitAllocation:
    """``base`` with every layer at ``setting`` (``None``: ``base`` itself)."""
    if setting is None:
        return base
    layers = {name.rsplit(".attn", 1)[0]: setting for name in base.bits if name.endswith(".attn.matmul_qk")}
    return BitAllocation(dict(base.bits), PatchwiseSpec(layers, score, apply_to).to_dict())


def is_attention(name: str) -> bool:
    return ".attn.matmul_qk" in name or any(name.endswith(part) for part in ATTENTION)


def _model(tag: str | None, img_size: int | None = None):
    """The demo ViT (``tag`` None) or a timm model, optionally at another image size (more tokens)."""
    if tag is None:
        model = create_demo_vit()
    else:
        model = timm.create_model(tag, pretrained=False, **({"img_size": img_size} if img_size else {}))
    return model.eval(), _trace(model.eval(), 1).component_names


_TRACES: dict[tuple[int, int], ModelTrace] = {}


def _trace(model, batch: int) -> ModelTrace:
    """The model's trace at ``batch``, recorded once per (model, batch) of this run."""
    key = (id(model), batch)
    if key not in _TRACES:
        _TRACES[key] = trace_model(model, batch=batch)
    return _TRACES[key]


def measure(model, allocation: BitAllocation, accel: hwsim.Accelerator, batch: int) -> dict:
    """Attention and model totals, plus the attention ops (summed over blocks) by op kind."""
    result = hwsim.estimate_workload(_trace(model, batch).workload(allocation), accel)
    ops: dict[str, dict[str, float]] = {}
    for op in result.ops:
        if is_attention(op.name):
            kind = "class_rows" if op.name.endswith("class_rows") else op.name.rsplit(".", 1)[1]
            row = ops.setdefault(kind, dict.fromkeys(("cycles", "energy_pj", "dram", "mac", "vector", "sram"), 0.0))
            row["cycles"] += op.cycles
            row["energy_pj"] += op.energy_pj
            for part in ("dram", "mac", "vector", "sram"):
                row[part] += getattr(op, f"energy_{part}_pj")
    return {"latency_s": result.latency_s, "energy_pj": result.energy_pj,
            "attn_latency_s": sum(o.latency_s for o in result.ops if is_attention(o.name)),
            "attn_energy_pj": sum(o.energy_pj for o in result.ops if is_attention(o.name)), "ops": ops}


def pct(new: float, old: float) -> str:
    return f"{100 * (new / old - 1):+.1f}%"


def goal_table(report: dict, runs: tuple = GOAL_RUNS) -> None:
    print("## Goal: attention latency ≥ 25% and energy ≥ 20% below the same preset's W8A8\n")
    print("| model | batch | accelerator | setting | attention latency | attention energy | model latency | "
          "model energy | goal |")
    print("|---|---:|---|---|---:|---:|---:|---:|---|")
    rows, misses = [], []
    for model_name, tag, batch in runs:
        model, names = _model(tag)
        base = BitAllocation.uniform("W8A8", names)
        for pair in PAIRS:
            for preset, accel in ((p, a) for name in pair for p, a in _designs(name)):
                plain = measure(model, base, accel, batch)
                for setting in GOAL_SETTINGS:
                    row = measure(model, uniform_patchwise(base, setting), accel, batch)
                    lat, energy = 1 - row["attn_latency_s"] / plain["attn_latency_s"], \
                        1 - row["attn_energy_pj"] / plain["attn_energy_pj"]
                    met = [m for m, value in (("latency", lat), ("energy", energy)) if value >= GOAL[m]]
                    verdict = "met" if len(met) == 2 else (f"{met[0]} only" if met else "no")
                    rows.append({"model": model_name, "batch": batch, "accelerator": preset, "setting": str(setting),
                                 "base": plain, "patchwise": row, "attn_latency_saved": lat,
                                 "attn_energy_saved": energy, "goal": verdict})
                    print(f"| {model_name} | {batch} | {preset} | {setting} | "
                          f"{pct(row['attn_latency_s'], plain['attn_latency_s'])} | "
                          f"{pct(row['attn_energy_pj'], plain['attn_energy_pj'])} | "
                          f"{pct(row['latency_s'], plain['latency_s'])} | {pct(row['energy_pj'], plain['energy_pj'])} "
                          f"| {verdict} |", flush=True)
                    if "_tokens" in preset and verdict != "met":
                        misses.append(rows[-1])
    report["goal"] = rows
    print()
    explain_misses(misses)


def _designs(preset: str):
    """The preset, then its what-if variant (if any): ``(label, accelerator)``."""
    accel = accelerators.load(preset)
    yield preset, accel
    if preset in WHAT_IF:
        label, (section, key), value = WHAT_IF[preset]
        config = copy.deepcopy(accel.config)
        config[section][key] = value
        config["name"] = f"{preset} {label}"
        yield f"{preset} {label}", accelerators.from_dict(config, source=f"{preset} {label}")


def explain_misses(misses: list[dict]) -> None:
    """For each token-aware row that misses a goal: the attention per op, and the cost that stops it."""
    if not misses:
        print("Every token-aware row meets both goals.\n")
        return
    print("## What stops the missed goals (token-aware presets; attention summed over blocks, base → patch-wise)\n")
    shown = set()
    for row in misses:
        base, pw = row["base"], row["patchwise"]
        print(f"**{row['model']} batch {row['batch']}, {row['accelerator']}, {row['setting']}** "
              f"(attention latency {-100 * row['attn_latency_saved']:+.1f}%, energy {-100 * row['attn_energy_saved']:+.1f}%)\n")
        if (row["model"], row["accelerator"]) in shown:
            print(_blocker(row) + "\n")
            continue
        shown.add((row["model"], row["accelerator"]))
        print("| op | cycles | energy (µJ) | of which DRAM | MAC | vector | SRAM |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for kind in dict.fromkeys([*base["ops"], *pw["ops"]]):
            b, p = base["ops"].get(kind), pw["ops"].get(kind)
            cells = [_change(b, p, "cycles", 1.0, 0)] + [_change(b, p, field, 1e-6, 1)
                                                         for field in ("energy_pj", "dram", "mac", "vector", "sram")]
            print(f"| {kind} | {' | '.join(cells)} |")
        print("\n" + _blocker(row) + "\n")


def _change(before: dict | None, after: dict | None, field: str, scale: float, digits: int) -> str:
    """``before → after`` of one field of an attention op (– where the op does not exist)."""
    return " → ".join(f"{row[field] * scale:,.{digits}f}" if row else "–" for row in (before, after))


def _blocker(row: dict) -> str:
    """The largest remaining attention cost of the missed metric(s), its share, and its remedy."""
    pw, base = row["patchwise"], row["base"]
    lines = []
    for metric, field, saved in (("latency", "cycles", row["attn_latency_saved"]),
                                 ("energy", "energy_pj", row["attn_energy_saved"])):
        if saved >= GOAL[metric]:
            continue
        total_pw = sum(op[field] for op in pw["ops"].values())
        total_base = sum(op[field] for op in base["ops"].values())
        kind, op = max(pw["ops"].items(), key=lambda item: item[1][field])
        part = "cycles" if metric == "latency" else max(("dram", "mac", "vector", "sram"), key=lambda p: op[p])
        target = (1 - GOAL[metric]) * total_base
        needed = total_pw - target
        remedy = REMEDY.get((kind, part), "")
        what = "cycles" if metric == "latency" else f"energy ({part} {100 * op[part] / op[field]:.0f}% of it)"
        before = base["ops"].get(kind, {field: 0})[field]
        lines.append(f"{metric}: {kind} is {100 * op[field] / total_pw:.0f}% of the patch-wise attention {what}, "
                     f"{pct(op[field], before) if before else 'new'} against the base; the goal needs "
                     f"{needed / total_pw:.0%} of the patch-wise attention {metric} removed"
                     + (f" — would be removed by {remedy}" if remedy else ""))
    return "; ".join(lines) if lines else "goal met"


def codesign(report: dict, out: Path) -> None:
    print("## Co-design: attention cost against ρ and sequence length, relative to the plain preset's W8A8\n")
    print("| preset | area (mm²) | sequence | levels | ρ | attention latency | attention energy | latency × area |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    points = []
    for label, img_size in SEQUENCES:
        model, names = _model("deit_small_patch16_224", img_size)
        base = BitAllocation.uniform("W8A8", names)
        for plain_name, token_name in PAIRS:
            reference = None
            for preset in (plain_name, token_name):
                accel = accelerators.load(preset)
                area = hwsim.area(accel).total_mm2
                for levels in SWEEP_LEVELS:
                    for rho in SWEEP_RHOS:
                        setting = None if rho == 1 else LayerSetting((rho,), levels)
                        row = measure(model, uniform_patchwise(base, setting), accel, 1)
                        reference = reference or (row, area)
                        point = {"preset": preset, "pair": plain_name, "area_mm2": area, "sequence": label,
                                 "levels": "/".join(map(str, levels)), "rho": rho,
                                 "latency": row["attn_latency_s"] / reference[0]["attn_latency_s"],
                                 "energy": row["attn_energy_pj"] / reference[0]["attn_energy_pj"],
                                 "latency_area": row["attn_latency_s"] * area
                                 / (reference[0]["attn_latency_s"] * reference[1])}
                        points.append(point)
                        if rho in (1.0, 0.5, 0.25, 0.1):
                            print(f"| {preset} | {area:.3f} | {label} | {point['levels']} | {rho:g} | "
                                  f"{point['latency']:.3f} | {point['energy']:.3f} | {point['latency_area']:.3f} |",
                                  flush=True)
    report["codesign"] = points
    print()
    for label, _ in SEQUENCES:
        for plain_name, token_name in PAIRS:
            best_plain = min(p["latency_area"] for p in points if p["preset"] == plain_name and p["sequence"] == label)
            paying = [p for p in points if p["preset"] == token_name and p["sequence"] == label
                      and p["latency_area"] < best_plain]
            where = ", ".join(f"ρ={p['rho']:g}@{p['levels']}" for p in paying) or "nowhere"
            print(f"{token_name}, {label}: latency × area below {plain_name}'s best ({best_plain:.3f}) at {where}")
    print()
    print("wrote", *plot_codesign(points, out))


PRESET_LOOK = {"plain": ("--", "plain"), "tokens": ("-", "token-aware")}
SEQ_COLOURS = {SEQUENCES[0][0]: OKABE_ITO["blue"], SEQUENCES[1][0]: OKABE_ITO["vermillion"]}
LEVEL_MARKERS = {"8/4": "o", "8/2": "^"}
METRICS = (("latency", "attention latency"), ("energy", "attention energy"), ("latency_area", "attention latency × area"))


def plot_codesign(points: list[dict], out: Path) -> list[Path]:
    """Rows: preset pair; columns: attention latency, energy, latency × area (÷ the plain W8A8); x: ρ."""
    pairs = list(dict.fromkeys(p["pair"] for p in points))
    with style():
        fig = new_figure(DOUBLE_COLUMN_IN, 2.2 * len(pairs) + 0.4)
        axes = fig.subplots(len(pairs), len(METRICS), squeeze=False)
        for r, pair in enumerate(pairs):
            for c, (metric, title) in enumerate(METRICS):
                ax = axes[r][c]
                for sequence, colour in SEQ_COLOURS.items():
                    for kind, (line, kind_label) in PRESET_LOOK.items():
                        for levels, marker in LEVEL_MARKERS.items():
                            series = sorted((p for p in points if p["pair"] == pair and p["sequence"] == sequence
                                             and p["levels"] == levels and p["preset"].endswith("_tokens")
                                             == (kind == "tokens")), key=lambda p: -p["rho"])
                            ax.plot([p["rho"] for p in series], [p[metric] for p in series], linestyle=line,
                                    marker=marker, color=colour, fillstyle="full" if kind == "tokens" else "none",
                                    label=f"{kind_label}, {sequence.split(', ')[1]}, {levels}")
                ax.axhline(1.0, color="black", linewidth=0.8)
                ax.invert_xaxis()
                ax.set_title(f"{pair}: {title}")
                ax.set_xlabel("ρ (share of patch tokens at 8 bits)")
                ax.set_ylabel("÷ plain preset, W8A8")
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=4)
        return save(fig, [out / f"patchwise_codesign.{fmt}" for fmt in ("png", "pdf")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/patchwise_hardware"))
    parser.add_argument("--part", choices=("all", "goal", "codesign"), default="all")
    parser.add_argument("--replot", type=Path, metavar="JSON", help="redraw the co-design figure from a saved JSON")
    parser.add_argument("--smoke", action="store_true", help="the goal table on the demo model only, to check the script runs (the test suite does)")
    args = parser.parse_args(argv)
    if args.replot:
        print("wrote", *plot_codesign(json.loads(args.replot.read_text())["codesign"], args.out))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"provenance": provenance(model_tag="deit_small_patch16_224")}
    if args.smoke:
        goal_table(report, GOAL_RUNS[-1:])
        return 0
    if args.part in ("all", "goal"):
        goal_table(report)
    if args.part in ("all", "codesign"):
        codesign(report, args.out)
    write_json(args.out / f"patchwise_hardware_{args.part}.json", report)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PMQError as exc:
        sys.stderr.write(f"patchwise hardware benchmark: error: {exc}\n")
        sys.exit(2)
