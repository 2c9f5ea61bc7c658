"""Run SCALE-Sim 3.0.0 (unmodified) on one topology file and one configuration; print its reports as JSON.

Runs inside SCALE-Sim's own venv (it needs ``numpy<2``): ``benchmarks/fidelity.py`` starts it as a
subprocess, one configuration per process, and reads one JSON document from its stdout. Argument:
a JSON spec ``{"topology": path, "gemm": bool, "rows", "cols", "dataflow", "bandwidth",
"read_bandwidth", "interface", "sram_kb": [ifmap, filter, ofmap], "work": dir}``, written as SCALE-Sim's
default ``configs/scale.cfg`` with those keys substituted (``scalesim_peer.scale_cfg_text``). Under ``USER``
SCALE-Sim 3.0.0 reads the ifmap and the filter over their own ports at ``IfmapSRAMBankBandwidth`` /
``FilterSRAMBankBandwidth`` words/cycle (``read_bandwidth``) and writes the ofmap at ``Bandwidth``
(``single_layer_sim.py``), so both are set. The layout file is header-only (default layouts), so
SCALE-Sim does not look for ``layouts/conv_nets/test.csv`` in the working directory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scalesim_peer import ArrayConfig, scale_cfg_text  # noqa: E402  (stdlib only: importable in SCALE-Sim's venv)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if row]
    header = [cell for cell in rows[0] if cell]
    return [dict(zip(header, row, strict=False)) for row in rows[1:]]


def main(spec_path: str) -> None:
    from scalesim.scale_sim import scalesim  # only importable inside the SCALE-Sim venv

    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    run = f"run_{spec['rows']}x{spec['cols']}_{spec['dataflow']}_bw{spec['bandwidth']}"
    config = ArrayConfig(spec["rows"], spec["cols"], *spec["sram_kb"], bandwidth_words_per_cycle=spec["bandwidth"],
                         interface_bandwidth=spec["interface"], read_bandwidth_words_per_cycle=spec["read_bandwidth"])
    (work / "scale.cfg").write_text(scale_cfg_text(config, spec["dataflow"], run))
    (work / "layout.csv").write_text("Layer,\n")
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # SCALE-Sim prints progress; stdout carries only the JSON
        sim = scalesim(save_disk_space=True, verbose=False, config=str(work / "scale.cfg"),
                       topology=spec["topology"], layout=str(work / "layout.csv"), input_type_gemm=spec["gemm"])
        sim.run_scale(top_path=str(work / "out"))
    wall = time.perf_counter() - start
    reports = work / "out" / run
    layers = []
    for compute, access in zip(read_rows(reports / "COMPUTE_REPORT.csv"),
                               read_rows(reports / "DETAILED_ACCESS_REPORT.csv"), strict=True):
        total, stall = int(compute["Total Cycles"]), int(compute["Stall Cycles"])
        layers.append({
            "layer_id": int(compute["LayerID"]),
            "total_cycles": total,
            "stall_cycles": stall,
            "compute_cycles": total - stall,
            "total_cycles_incl_prefetch": int(compute["Total Cycles (incl. prefetch)"]),
            **{key.lower().replace(" ", "_"): int(float(value)) for key, value in access.items()
               if key.startswith(("SRAM", "DRAM")) and "Cycle" not in key},
        })
    json.dump({"spec": {k: v for k, v in spec.items() if k != "work"}, "wall_s": round(wall, 2),
               "layers": layers}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
