"""``report.md`` of a results folder: setup, versions, accelerator configs and the measured numbers,
as Markdown tables to paste. Built from the result files alone (like the figures)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pmq.defaults import FLOAT_BITS_ON_HARDWARE
from pmq.io import write_text
from pmq.plots.allocation import PART_NAMES, layer_grid
from pmq.plots.pareto import top1_standard_error
from pmq.records import AllocationEntry
from pmq.results import FIGURES_DIR, POINTS_FILE, REPORT_FILE, RUN_FILE, Results, load_results

FIGURE_CAPTIONS = {
    "pareto_accuracy": "Top-1 (± one standard error) against model size, BOPs, latency and energy: uniform "
                       "settings, PMQ and HAWQ-v2.",
    "pareto_omega": "Exact Pareto frontiers of total sensitivity ΣΩ against cost, with the chosen allocations.",
    "allocation_heatmap": "Bits per layer and component of the highlighted allocations.",
    "breakdown": "Latency and energy per op type on every accelerator preset.",
    "speedup": "Speedup and energy ratio against the baseline across accelerators and budgets (the baseline "
               "INT8 array is not drawn: fewer bits do not change its cost, so it sits at 1×).",
    "token_bits": "Patch-wise activation bits over input images.",
}


_NUMERIC = re.compile(r"^[-+]?[0-9][0-9.,e+-]*( ?[×%])?( / [-+]?[0-9.]+%)?$")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; columns whose cells are all numbers (or missing) are right-aligned."""
    def numeric(i: int) -> bool:
        cells = [row[i] for row in rows if row[i] is not None]
        return bool(cells) and all(isinstance(c, (int, float)) or bool(_NUMERIC.match(str(c))) for c in cells)

    align = ["---:" if numeric(i) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def _fixed(value: float | None, digits: int) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _method(results: Results, entry: AllocationEntry) -> str:
    return results.style(entry.method).label


def _budget(entry: AllocationEntry) -> str:
    if not entry.budget:
        return "–"
    of = f" of `{entry.base}`" if entry.base else ""
    return f"{entry.objective} ≤ {entry.budget}{of}"


def _setup(results: Results) -> list[str]:
    run, model, data = results.run, results.run.get("model", {}), results.run.get("data", {})
    arch = model.get("architecture", {})
    lines = ["## Setup", ""]
    if arch:
        shape = "×".join(str(s) for s in arch["img_size"])
        lines.append(
            f"- **Model**: `{model.get('tag')}` (timm `{model.get('class')}`, {shape}×{arch['in_chans']} input, "
            f"patch {arch['patch_size'][0]}, {arch['tokens']} tokens, embed dim {arch['embed_dim']}, depth "
            f"{arch['depth']}, {arch['num_heads']} heads, {arch['num_classes']} classes, "
            f"{model.get('parameters', 0) / 1e6:.2f} M parameters, {model.get('components')} quantizable components "
            "including both attention matmuls).")
    else:
        lines.append(f"- **Model**: `{model.get('tag')}`.")
    training = model.get("training")
    if training and training.get("command"):
        lines.append(f"- **Training**: `{training['command']}`.")
    if data:
        lines.append(
            f"- **Data**: {data.get('source')}; top-1 on {data.get('test_images')} of {data.get('test_set_size')} test "
            f"images (seeded subset, seed {data.get('test_subset_seed')}); calibration on "
            f"{data.get('calibration_images')} {data.get('calibration_split')} images (seed {data.get('calibration_seed')}); "
            f"sensitivities on {data.get('sensitivity_images')} of them.")
    quantizer = run.get("quantizer")
    if quantizer:
        ranges = quantizer["activation_ranges"] + (" (dynamic min-max per row)" if quantizer["observer"] is None
                                                   else f" ({quantizer['observer']} observer)")
        lines.append(f"- **Quantizer**: activations {quantizer['activations']}, ranges {ranges}; weights "
                     f"{quantizer['weights']}, {quantizer['weight_ranges']} ranges on the int-b grid.")
    search = run.get("search", {})
    if search:
        budgets = "; ".join(f"{obj}: {', '.join(b)}" for obj, b in search.get("budgets", {}).items())
        lines.append(
            f"- **Search**: metrics {', '.join(search.get('metrics', []))}; bits "
            f"{{{', '.join(map(str, search.get('bit_choices', [])))}}} for weights and activations of every "
            f"component; budgets {budgets} (× the cost of uniform W8A8); latency and energy priced on "
            f"`{search.get('primary_accelerator')}`; float components run at "
            f"{search.get('float_on_hardware_bits', FLOAT_BITS_ON_HARDWARE)} bits on hardware.")
    base_accel, base_setting = results.baseline
    lines.append(f"- **Baseline** for speedups and savings: uniform {base_setting} on `{base_accel}`.")
    if run.get("runtime_s") is not None:
        lines.append(f"- **Runtime**: {run['runtime_s']:.0f} s for the whole run (`{run.get('reproduce', 'pmq demo')}`).")
    versions = run.get("provenance", {})
    if versions:
        keys = [k for k in ("pmq", "torch", "timm", "numpy", "matplotlib", "simpy", "networkx", "python") if k in versions]
        lines += ["", table(["package", *keys], [["version", *[versions[k] for k in keys]]])]
        if versions.get("platform"):
            lines += ["", f"Platform: `{versions['platform']}`."]
    return lines


def _accelerators(results: Results) -> list[str]:
    rows = []
    for name, cfg in results.run.get("accelerators", {}).items():
        buffers = cfg.get("buffers", {})
        array = cfg.get("array", {})
        if "rows" in array:
            shape = f"{array['rows']}×{array['cols']}"
        else:
            shape = " × ".join(f"{v} {k}" for k, v in array.items() if isinstance(v, int) and "cycles" not in k)
        rows.append([
            name, cfg.get("kind"), f"{cfg.get('clock_hz', 0) / 1e6:g}", shape,
            "/".join(f"{buffers.get(b, 0) // 1024}" for b in ("ifmap", "filter", "ofmap")),
            cfg.get("dram", {}).get("bandwidth_bits_per_cycle"), cfg.get("dram", {}).get("energy_pj_per_bit"),
            cfg.get("energy", {}).get("static_power_w"),
        ])
    if not rows:
        return []
    return ["## Accelerators", "",
            table(["preset", "PE model", "clock (MHz)", "array", "ifmap/filter/ofmap (KiB)", "DRAM (bit/cycle)",
                   "DRAM (pJ/bit)", "static (W)"], rows),
            "", f"Every key of every preset, with its source, is in `{RUN_FILE}` (`accelerators`, "
                "`accelerator_sources`)."]


def _results_tables(results: Results) -> list[str]:
    primary = results.primary_accelerator
    rows = []
    for label in results.labels:
        p = results.point(label, primary)
        if p is None:
            continue
        entry = results.entries[label]
        omega = None if p["omega"] is None else f"{p['omega']:.4g}" + ("†" if entry.method == "patchwise" else "")
        rows.append([f"`{label}`", _method(results, entry), _budget(entry),
                     f"{100 * p['top1']:.2f} ± {top1_standard_error(p):.2f}", _fixed(p["size_mb"], 3),
                     _fixed(p["gbops"], 3), _fixed(p["latency_s"] * 1e3, 4), _fixed(p["energy_pj"] * 1e-6, 2), omega])
    images = max((p["images"] for p in results.points), default=0)
    lines = [f"## Measured results (latency and energy on `{primary}`, per image)", "",
             table(["allocation", "method", "budget", "top-1 (%) ± SE", "size (MB)", "GBOPs", "latency (ms)",
                    "energy (µJ)", "ΣΩ"], rows), "",
             f"± is one standard error of top-1 on {images} test images (binomial, sqrt(p(1−p)/n)): "
             "differences within about two of them are noise. ΣΩ is the total sensitivity the search minimised, "
             "on each metric's own scale (PMQ and HAWQ-v2 values are not comparable)."
             + (" † Patch-wise rows: the Ω of the token-group step (Fisher-weighted error of moving token "
                "groups to fewer bits, summed over layers), not the component ΣΩ of the search above it."
                if any(e.method == "patchwise" for e in results.entries.values()) else ""),
             *_hardware_notes(results)]
    accels = results.accelerators
    base_accel, base_setting = results.baseline
    base = results.point(base_setting, base_accel)
    for title, column, scale, digits in (("Latency per image (ms)", "latency_s", 1e3, 4),
                                         ("Energy per image (µJ)", "energy_pj", 1e-6, 2)):
        body = []
        for label in results.labels:
            cells = [results.point(label, a) for a in accels]
            body.append([f"`{label}`", *[_fixed(c[column] * scale, digits) if c else None for c in cells]])
        lines += ["", f"## {title} on every accelerator", "", table(["allocation", *accels], body)]
    if base is not None:
        body = []
        for label in results.labels:
            cells = [results.point(label, a) for a in accels]
            body.append([f"`{label}`", *[
                f"{base['latency_s'] / c['latency_s']:.2f}× / {c['energy_pj'] / base['energy_pj']:.2f}×"
                if c else None for c in cells]])
        lines += ["", f"## Speedup / energy ratio against uniform {base_setting} on `{base_accel}`", "",
                  "Each cell: speedup (higher is better) / energy ÷ the baseline's (lower is better).", "",
                  table(["allocation", *accels], body)]
    return lines


def _hardware_notes(results: Results) -> list[str]:
    """What a reader would otherwise ask: why two settings cost the same on an accelerator, and
    why a patch-wise allocation is slower than its base on the search's accelerator."""
    notes = []
    uniform = [label for label in results.labels if results.entries[label].method == "uniform"]
    for accelerator in results.accelerators:
        cycles: dict[int, list[str]] = {}
        for label in uniform:
            p = results.point(label, accelerator)
            if p is not None and label != "float":
                cycles.setdefault(p["cycles"], []).append(label)
        for same in (group for group in cycles.values() if len(group) > 1):
            description = results.run.get("accelerators", {}).get(accelerator, {}).get("description", "")
            names = [f"`{s}`" for s in same]
            notes.append(f"- {', '.join(names[:-1])} and {names[-1]} take the same cycles on `{accelerator}`: its PE "
                         "array's time does not depend on the bits in which they differ"
                         + (f" ({description.strip().rstrip('.')})" if description else "") + ".")
    primary = results.primary_accelerator
    for label, entry in results.entries.items():
        p, b = results.point(label, primary), results.point(entry.base, primary)
        if entry.method == "patchwise" and p and b and p["latency_s"] > b["latency_s"]:
            notes.append(f"- `{label}` is slower than its base `{entry.base}` on `{primary}` "
                         f"({p['latency_s'] * 1e3:.4f} vs {b['latency_s'] * 1e3:.4f} ms) although it has fewer BOPs: "
                         f"its budget was on {entry.objective}; ranking and regrouping tokens (`token_score`, `regroup` "
                         "ops on the vector unit) and running each token group as its own GEMM part cost more "
                         "cycles there than the fewer activation bits save.")
    return ["", "Notes:", *notes] if notes else []


def _allocations(results: Results) -> list[str]:
    lines = ["## Chosen allocations", ""]
    for label in results.run.get("highlight", []):
        if label not in results.entries:
            continue
        entry = results.entries[label]
        allocation = results.allocation(label)
        rows_, parts, cells = layer_grid(list(allocation))
        grid: dict[int, dict[str | None, str]] = {}
        for name, row, part in cells:
            grid.setdefault(row, {})[part] = str(allocation[name])
        body = []
        for r, row_label in enumerate(rows_):
            if None in grid[r]:
                body.append([f"`{row_label}`", grid[r][None], *[""] * (len(parts) - 1)])
            else:
                body.append([row_label, *[grid[r].get(p, "") for p in parts]])
        p = results.point(label, results.primary_accelerator)
        lines += [f"### `{label}`: {_method(results, entry)}, {entry.objective} ≤ {entry.budget}"
                  + (f" — top-1 {100 * p['top1']:.2f}%, {p['latency_s'] * 1e3:.4f} ms, "
                     f"{p['energy_pj'] * 1e-6:.2f} µJ on `{results.primary_accelerator}`" if p else ""), "",
                  table(["layer", *[PART_NAMES.get(x, x) for x in parts]], body), "",
                  "Cells read W(weight or 2nd operand bits)A(input or 1st operand bits).", ""]
    for label, entry in results.entries.items():
        if entry.method != "patchwise":
            continue
        patchwise = results.allocation(label).patchwise
        layers = patchwise.get("layers", {})
        body = [[f"`{layer}`", ", ".join(f"{r:g}" for r in _as_list(setting["rho"])),
                 "/".join(str(b) for b in setting.get("levels", patchwise.get("levels", [])))]
                for layer, setting in layers.items()]
        p = results.point(label, results.primary_accelerator)
        lines += [f"### `{label}`: patch-wise on `{entry.base}`, {_budget(entry)}"
                  + (f" — top-1 {100 * p['top1']:.2f}%" if p else ""), "",
                  (table(["layer", "ρ (share of patches kept high)", "bit levels"], body) if body
                   else "No layer gained from token groups under this budget."), "",
                  f"Operands {', '.join(patchwise.get('apply_to', []))}; tokens ranked by "
                  f"{patchwise.get('score', 'cls_attention')}; the class token stays at the high level.", ""]
    files = ", ".join(f"`{e.file}`" for e in results.entries.values())
    lines.append(f"Every allocation (loadable by `pmq evaluate/simulate --allocation`): {files}.")
    return lines


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _figures(results: Results) -> list[str]:
    folder = results.root / FIGURES_DIR
    lines = ["## Figures", ""]
    for name, caption in FIGURE_CAPTIONS.items():
        png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
        if png.is_file():
            extra = f" (vector: [{FIGURES_DIR}/{name}.pdf]({FIGURES_DIR}/{name}.pdf))" if pdf.is_file() else ""
            lines += [f"![{caption}]({FIGURES_DIR}/{name}.png)", "", f"*{caption}*{extra}", ""]
    if len(lines) == 2:
        lines.append(f"No figures yet: run `pmq plot {results.root}`.")
    lines += ["", f"Redraw from the files alone: `pmq plot {results.root} --format pdf`."]
    return lines


def render_report(results: Results) -> str:
    title = "# PMQ results" + (f": `{results.run['model']['tag']}`" if results.run.get("model") else "")
    status = [] if results.run.get("complete") else [
        "> **Incomplete run**: it stopped before finishing; the numbers below are what had finished.", ""]
    sections = [_setup(results), _accelerators(results), _results_tables(results), _allocations(results),
                _figures(results),
                ["## Files", "", f"`{POINTS_FILE}` (one row per allocation × accelerator), `{RUN_FILE}` (manifest, "
                 "provenance, configs), `allocations/`, `ops/<allocation>/<accelerator>.csv` (per op), "
                 "`frontiers/` (exact Pareto frontiers: ΣΩ, cost and the bits of every component per point). "
                 f"`{RUN_FILE}` records the size and sha256 of every file, so `pmq plot` refuses an altered folder."]]
    body = [title, "", *status, f"Created {results.run.get('created', '')}.", ""]
    for section in sections:
        if section:
            body += [*section, ""]
    return "\n".join(body).rstrip() + "\n"


def write_report(results_dir: str | Path) -> Path:
    """Write ``report.md`` into the results folder from its files and return its path."""
    results = load_results(results_dir)
    return write_text(results.root / REPORT_FILE, render_report(results))
