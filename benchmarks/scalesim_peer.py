"""SCALE-Sim 3.0.0 as the peer for hwsim's ``int8_systolic`` preset.

Why: hwsim's 8-bit systolic baseline must reproduce SCALE-Sim's compute cycles (within 1 %)
while being far faster. SCALE-Sim needs ``numpy<2``, so it runs in its own virtual environment
(created on first use, default ``<user cache>/pmq/scalesim-venv``, see ``--venv``); this script
drives it through a subprocess and never imports it into the project's interpreter.

Modes
-----
``--write-reference``  run SCALE-Sim on one DeiT-S and one ViT-L block (batch 1) for the ws and os
                       dataflows, check the closed form below against every row and write
                       ``tests/hwsim/data/scalesim_reference.json`` (atomically).
``--check-formula``    re-check the closed form against an existing reference file (no SCALE-Sim).
``--compare``          run the same GEMMs through SCALE-Sim and hwsim in one command, timing both,
                       and print a side-by-side table (goal: >= 100x faster at <= 1 % difference).

Configuration
-------------
Equal to SCALE-Sim's default ``configs/scale.cfg``: a 32x32 array, 64 KiB ifmap / filter / ofmap
SRAM, ``Bandwidth: 10`` words/cycle and ``InterfaceBandwidth: CALC`` (SCALE-Sim then estimates DRAM
bandwidth with 10 words/cycle read buffers and never stalls), 1-byte words, no sparsity, default
layouts. A header-only layout CSV is passed explicitly, so SCALE-Sim does not look for
``layouts/conv_nets/test.csv`` relative to the working directory.

GEMM convention (read from ``scalesim/topology_utils.py::load_arrays_gemm``)
--------------------------------------------------------------------------
A topology row ``Layer,M,N,K,`` (the trailing comma is required: the parser drops the last field)
becomes the convolution ``ifmap M x K, filter 1 x K, 1 channel, N filters, stride 1``, i.e.

    C[M x N] = A[M x K] . B[K x N]       M = output rows (ofmap pixels, e.g. tokens),
                                         K = reduction length (window size),
                                         N = output columns (number of filters).

So q.k^T per head (197x64 . 64x197) is ``M=197, K=64, N=197`` and the ``Gemm(name, m, k, n)`` of
hwsim takes the same three numbers in the order m, k, n.

Closed-form cycles (derived from ``scalesim/compute/systolic_compute_{ws,os}.py`` and
``scalesim/memory/double_buffered_scratchpad_mem.py``)
------------------------------------------------------------------------------------
For an R x C array (R rows = ArrayHeight, C columns = ArrayWidth):

    ws:  folds = ceil(K / R) * ceil(N / C)   per fold: M + 2R + C - 2 demand rows
         (R cycles to load the weight tile, M input rows streamed, R - 1 for the input skew
         across the rows and C - 1 for the partial sums to drain out of the columns)
    os:  folds = ceil(M / R) * ceil(N / C)   per fold: K + R + C - 2 demand rows
         (K reduction steps, R - 1 and C - 1 for the skew of the two operands; the drain of
         the outputs overlaps the next fold)

    compute_cycles = folds * per_fold - 1

The ``- 1`` is because SCALE-Sim reports the (0-based) cycle index of the last OFMAP write
("Total Cycles" = max serviced cycle) rather than a count. With CALC bandwidth there are no
stalls, so this is SCALE-Sim's "Total Cycles" column exactly. "Total Cycles (incl. prefetch)"
additionally spans the DRAM prefetch before the first fold and the OFMAP drain to DRAM.

Worked example, DeiT-S qkv (M=197, K=384, N=1152) on 32x32:

    ws: ceil(384/32) * ceil(1152/32) = 12 * 36 = 432 folds, 197 + 64 + 32 - 2 = 291 rows/fold,
        432 * 291 - 1 = 125711 cycles
    os: ceil(197/32) * ceil(1152/32) = 7 * 36 = 252 folds, 384 + 32 + 32 - 2 = 446 rows/fold,
        252 * 446 - 1 = 112391 cycles

Usage::

    python benchmarks/scalesim_peer.py --write-reference            # 20-40 min: SCALE-Sim is slow
    python benchmarks/scalesim_peer.py --check-formula              # instant
    python benchmarks/scalesim_peer.py --compare --blocks deit_s     # ~2-3 min
    python benchmarks/scalesim_peer.py --compare --reuse-reference   # hwsim only, SCALE-Sim from JSON

The closed form was also checked against SCALE-Sim on random shapes (1..150 per dimension) on
32x32 and 16x32 arrays, both dataflows: exact on every one.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

SCALESIM_VERSION = "3.0.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = REPO_ROOT / "tests" / "hwsim" / "data" / "scalesim_reference.json"
DATAFLOWS = ("ws", "os")


@dataclass(frozen=True)
class ArrayConfig:
    """The SCALE-Sim architecture knobs this peer uses (the default scale.cfg)."""

    rows: int = 32
    cols: int = 32
    ifmap_sram_kb: int = 64
    filter_sram_kb: int = 64
    ofmap_sram_kb: int = 64
    bandwidth_words_per_cycle: int = 10
    interface_bandwidth: str = "CALC"
    word_bytes: int = 1
    read_bandwidth_words_per_cycle: int = 10  # USER mode reads ifmap/filter at the layout's bank bandwidth


@dataclass(frozen=True)
class GemmLayer:
    """One GEMM C[M x N] = A[M x K] . B[K x N]; ``count`` is how often a block runs it."""

    name: str
    block: str
    M: int
    N: int
    K: int
    count: int = 1


@dataclass(frozen=True)
class BlockShape:
    """The dimensions of one ViT encoder block at batch 1."""

    tokens: int
    dim: int
    heads: int
    head_dim: int
    mlp: int


BLOCKS = {
    "deit_s": BlockShape(tokens=197, dim=384, heads=6, head_dim=64, mlp=1536),
    "vit_l": BlockShape(tokens=197, dim=1024, heads=16, head_dim=64, mlp=4096),
}


def block_gemms(block: str) -> list[GemmLayer]:
    """The six GEMMs of one encoder block; per-head matmuls appear once with count = heads."""
    s = BLOCKS[block]
    return [
        GemmLayer("qkv", block, M=s.tokens, K=s.dim, N=3 * s.heads * s.head_dim),
        GemmLayer("q_kT", block, M=s.tokens, K=s.head_dim, N=s.tokens, count=s.heads),
        GemmLayer("attn_v", block, M=s.tokens, K=s.tokens, N=s.head_dim, count=s.heads),
        GemmLayer("proj", block, M=s.tokens, K=s.heads * s.head_dim, N=s.dim),
        GemmLayer("fc1", block, M=s.tokens, K=s.dim, N=s.mlp),
        GemmLayer("fc2", block, M=s.tokens, K=s.mlp, N=s.dim),
    ]


def closed_form_cycles(m: int, n: int, k: int, dataflow: str, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0.0's stall-free "Total Cycles" for a GEMM (see the module docstring)."""
    if dataflow == "ws":
        folds = math.ceil(k / rows) * math.ceil(n / cols)
        per_fold = m + 2 * rows + cols - 2
    elif dataflow == "os":
        folds = math.ceil(m / rows) * math.ceil(n / cols)
        per_fold = k + rows + cols - 2
    else:
        raise ValueError(f"unknown dataflow {dataflow!r}: use one of {DATAFLOWS}")
    return folds * per_fold - 1


# --------------------------------------------------------------------------- SCALE-Sim side


def default_venv() -> Path:
    """``$XDG_CACHE_HOME/pmq/scalesim-venv`` (``~/.cache`` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pmq" / "scalesim-venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(venv: Path) -> Path:
    """Create the SCALE-Sim venv when it is missing or lacks scalesim 3.0.0; return its python."""
    python = venv_python(venv)
    probe = "import importlib.metadata as m; print(m.version('scalesim'))"
    if python.exists():
        found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == SCALESIM_VERSION:
            return python
    print(f"creating SCALE-Sim {SCALESIM_VERSION} venv in {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    f"scalesim=={SCALESIM_VERSION}", "numpy<2"], check=True)
    return python


def scale_cfg_text(cfg: ArrayConfig, dataflow: str, run_name: str) -> str:
    """SCALE-Sim's default scale.cfg with the dataflow (and run name) substituted."""
    return f"""[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight:    {cfg.rows}
ArrayWidth:     {cfg.cols}
IfmapSramSzkB:    {cfg.ifmap_sram_kb}
FilterSramSzkB:   {cfg.filter_sram_kb}
OfmapSramSzkB:    {cfg.ofmap_sram_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : {cfg.bandwidth_words_per_cycle}
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: {cfg.read_bandwidth_words_per_cycle}
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: {cfg.read_bandwidth_words_per_cycle}
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: {cfg.interface_bandwidth}
UseRamulatorTrace: False
"""


def read_report_row(path: Path) -> dict[str, str]:
    """The single layer row of a SCALE-Sim report CSV, keyed by its (stripped) header."""
    with open(path, newline="") as f:
        rows = [[cell.strip() for cell in row] for row in csv.reader(f) if row]
    return dict(zip(rows[0], rows[1], strict=True))


def run_one_in_worker(cfg: ArrayConfig, layer: GemmLayer, dataflow: str, work: Path) -> dict:
    """Run one GEMM through SCALE-Sim (inside its venv) and return the report items + wall time."""
    from scalesim.scale_sim import scalesim  # only importable inside the SCALE-Sim venv

    run_name = f"{layer.block}_{layer.name}_{dataflow}"
    run_dir = work / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "scale.cfg").write_text(scale_cfg_text(cfg, dataflow, run_name))
    (run_dir / "topology.csv").write_text(f"Layer,M,N,K,\n{layer.name},{layer.M},{layer.N},{layer.K},\n")
    (run_dir / "layout.csv").write_text("Layer,\n")  # header only: default layouts

    start = time.perf_counter()
    sim = scalesim(save_disk_space=True, verbose=False, config=str(run_dir / "scale.cfg"),
                   topology=str(run_dir / "topology.csv"), layout=str(run_dir / "layout.csv"),
                   input_type_gemm=True)
    sim.run_scale(top_path=str(run_dir / "out"))
    wall_s = time.perf_counter() - start

    reports = run_dir / "out" / run_name
    compute = read_report_row(reports / "COMPUTE_REPORT.csv")
    detail = read_report_row(reports / "DETAILED_ACCESS_REPORT.csv")
    total = int(compute["Total Cycles"])
    stall = int(compute["Stall Cycles"])
    return {
        **asdict(layer),
        "dataflow": dataflow,
        "compute_cycles": total - stall,
        "total_cycles": total,
        "stall_cycles": stall,
        "total_cycles_incl_prefetch": int(compute["Total Cycles (incl. prefetch)"]),
        "overall_util": float(compute["Overall Util %"]),
        "mapping_efficiency": float(compute["Mapping Efficiency %"]),
        "compute_util": float(compute["Compute Util %"]),
        "sram_ifmap_reads": int(float(detail["SRAM IFMAP Reads"])),
        "sram_filter_reads": int(float(detail["SRAM Filter Reads"])),
        "sram_ofmap_writes": int(float(detail["SRAM OFMAP Writes"])),
        "dram_ifmap_reads": int(float(detail["DRAM IFMAP Reads"])),
        "dram_filter_reads": int(float(detail["DRAM Filter Reads"])),
        "dram_ofmap_writes": int(float(detail["DRAM OFMAP Writes"])),
        "wall_s": round(wall_s, 3),
    }


def worker_main(spec_path: str) -> None:
    """Entry point inside the SCALE-Sim venv: one JSON line per (layer, dataflow) on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    cfg = ArrayConfig(**spec["config"])
    work = Path(spec["work_dir"])
    for job in spec["jobs"]:
        row = run_one_in_worker(cfg, GemmLayer(**job["layer"]), job["dataflow"], work)
        print(json.dumps(row), flush=True)


def run_scalesim(python: Path, cfg: ArrayConfig, layers: list[GemmLayer],
                 dataflows: list[str]) -> list[dict]:
    """Run every (layer, dataflow) through SCALE-Sim sequentially, printing progress."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="scalesim-peer-") as tmp:
        spec = {
            "config": asdict(cfg),
            "work_dir": tmp,
            "jobs": [{"layer": asdict(layer), "dataflow": df} for df in dataflows for layer in layers],
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [str(python), str(Path(__file__).resolve()), "--worker", str(spec_path)]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=tmp) as proc:
            for line in proc.stdout:
                row = json.loads(line)
                print(f"  scalesim {row['block']:>6} {row['name']:<7} {row['dataflow']}: "
                      f"{row['compute_cycles']:>9} cycles in {row['wall_s']:.1f} s", flush=True)
                rows.append(row)
        if proc.returncode != 0:
            raise SystemExit(f"SCALE-Sim worker failed with exit code {proc.returncode}")
    return rows


# --------------------------------------------------------------------------- checks and output


def check_formula(rows: list[dict], cfg: ArrayConfig) -> bool:
    """Print closed form vs SCALE-Sim for every row; True when all match exactly."""
    print(f"\nclosed form vs SCALE-Sim ({cfg.rows}x{cfg.cols}):")
    print(f"{'block':<7}{'layer':<8}{'df':<4}{'M':>6}{'K':>6}{'N':>6}"
          f"{'scalesim':>11}{'formula':>11}  match")
    all_match = True
    for r in rows:
        expected = closed_form_cycles(r["M"], r["N"], r["K"], r["dataflow"], cfg.rows, cfg.cols)
        match = expected == r["compute_cycles"] and r["stall_cycles"] == 0
        all_match &= match
        print(f"{r['block']:<7}{r['name']:<8}{r['dataflow']:<4}{r['M']:>6}{r['K']:>6}{r['N']:>6}"
              f"{r['compute_cycles']:>11}{expected:>11}  {'yes' if match else 'NO'}")
    print("closed form reproduces every row exactly" if all_match else "closed form MISMATCH")
    return all_match


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)


def reference_payload(cfg: ArrayConfig, rows: list[dict]) -> dict:
    return {
        "scalesim_version": SCALESIM_VERSION,
        "generated_by": "benchmarks/scalesim_peer.py",
        "config": {**asdict(cfg), "scale_cfg": "SCALE-Sim default configs/scale.cfg"},
        "conventions": {
            "gemm": "C[M x N] = A[M x K] . B[K x N]; SCALE-Sim topology row 'Layer,M,N,K,'",
            "compute_cycles": "COMPUTE_REPORT 'Total Cycles' - 'Stall Cycles'",
            "total_cycles": "COMPUTE_REPORT 'Total Cycles' (compute + stalls)",
            "total_cycles_incl_prefetch": "COMPUTE_REPORT 'Total Cycles (incl. prefetch)'",
            "count": "times the GEMM runs per block (per-head matmuls: number of heads)",
            "formula_ws": "ceil(K/R)*ceil(N/C)*(M + 2R + C - 2) - 1",
            "formula_os": "ceil(M/R)*ceil(N/C)*(K + R + C - 2) - 1",
            "wall_s": "SCALE-Sim wall time for this one GEMM, interpreter start excluded",
        },
        "layers": rows,
    }


def dataflow_accelerator(base, dataflow: str):
    """``base`` rebuilt from its validated description with ``array.dataflow`` replaced."""
    import accelerators

    config = copy.deepcopy(base.config)
    config["array"]["dataflow"] = dataflow
    return accelerators.from_dict(config, source=f"{base.name} (dataflow {dataflow})")


def hwsim_rows(layers: list[GemmLayer], dataflows: list[str], preset: str) -> dict:
    """(block, layer, dataflow) -> (hwsim compute cycles, wall s) for one instance of each GEMM."""
    import accelerators
    import hwsim

    base = accelerators.load(preset)
    rows = {}
    for df in dataflows:
        acc = dataflow_accelerator(base, df)
        warm_up = hwsim.Workload()
        warm_up.add(hwsim.Gemm("warm_up", 8, 8, 8, bits_a=8, bits_b=8, count=1))
        hwsim.simulate(warm_up, acc)  # keep one-off import / cache costs out of the timings
        for layer in layers:
            workload = hwsim.Workload()
            workload.add(hwsim.Gemm(layer.name, layer.M, layer.K, layer.N, bits_a=8, bits_b=8, count=1))
            start = time.perf_counter()
            result = hwsim.simulate(workload, acc)
            rows[(layer.block, layer.name, df)] = (result.ops[0].compute_cycles, time.perf_counter() - start)
    return rows


def compare(ss_rows: list[dict], hw_rows: dict, cfg: ArrayConfig) -> bool:
    """Print SCALE-Sim and hwsim side by side; True when every layer is within 1 % and >= 100x."""
    print(f"\n{'layer':<15}{'df':<4}{'SCALE-Sim cyc':>14}{'hwsim cyc':>12}{'diff %':>9}"
          f"{'SCALE-Sim s':>13}{'hwsim s':>10}{'speedup':>10}")
    worst = 0.0
    ss_total = hw_total = 0.0
    off = []
    for r in ss_rows:
        hw_cycles, hw_s = hw_rows[(r["block"], r["name"], r["dataflow"])]
        diff = 100.0 * (hw_cycles - r["compute_cycles"]) / r["compute_cycles"]
        worst = max(worst, abs(diff))
        ss_total += r["wall_s"]
        hw_total += hw_s
        label = f"{r['block']}.{r['name']}"
        print(f"{label:<15}{r['dataflow']:<4}{r['compute_cycles']:>14}"
              f"{hw_cycles:>12}{diff:>+9.3f}{r['wall_s']:>13.2f}{hw_s:>10.4f}"
              f"{r['wall_s'] / hw_s:>9.0f}x")
        if abs(diff) > 1.0:
            off.append(f"  {label} {r['dataflow']} (M={r['M']} K={r['K']} N={r['N']}): hwsim {hw_cycles}, "
                       f"SCALE-Sim {r['compute_cycles']} = closed form "
                       f"{closed_form_cycles(r['M'], r['N'], r['K'], r['dataflow'], cfg.rows, cfg.cols)}")
    speedup = ss_total / hw_total
    print(f"{'total':<45}{ss_total:>13.2f}{hw_total:>10.4f}{speedup:>9.0f}x")
    ok = worst <= 1.0 and speedup >= 100.0
    print(f"worst |diff| {worst:.3f} %, speedup {speedup:.0f}x: "
          f"{'goal met' if ok else 'goal NOT met'} (<= 1 % and >= 100x)")
    if off:
        print("layers off by more than 1 %:\n" + "\n".join(off))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke", action="store_true", help="smallest setting: --check-formula on the stored "
                      "reference (no SCALE-Sim needed); the test suite runs it")
    mode.add_argument("--write-reference", action="store_true", help="run SCALE-Sim, write the JSON")
    mode.add_argument("--check-formula", action="store_true", help="check the closed form on the JSON")
    mode.add_argument("--compare", action="store_true", help="SCALE-Sim vs hwsim, side by side")
    mode.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--venv", type=Path, default=default_venv(),
                        help="SCALE-Sim virtual environment (created when missing)")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="reference JSON to write / check")
    parser.add_argument("--blocks", nargs="+", choices=sorted(BLOCKS), default=["deit_s", "vit_l"])
    parser.add_argument("--dataflows", nargs="+", choices=DATAFLOWS, default=list(DATAFLOWS))
    parser.add_argument("--layers", nargs="+", help="only these layer names (e.g. qkv fc1)")
    parser.add_argument("--preset", default="int8_systolic", help="hwsim accelerator for --compare")
    parser.add_argument("--reuse-reference", action="store_true",
                        help="--compare: take SCALE-Sim cycles and wall times from --reference instead of rerunning")
    args = parser.parse_args(argv)

    if args.worker:
        worker_main(args.worker)
        return 0

    cfg = ArrayConfig()
    if args.check_formula or args.smoke:
        payload = json.loads(args.reference.read_text())
        saved = payload["config"]
        return 0 if check_formula(payload["layers"], replace(cfg, rows=saved["rows"], cols=saved["cols"])) else 1

    layers = [layer for block in args.blocks for layer in block_gemms(block)
              if not args.layers or layer.name in args.layers]
    if args.compare:
        hw = hwsim_rows(layers, args.dataflows, args.preset)
        if args.reuse_reference:
            wanted = {(layer.block, layer.name) for layer in layers}
            ss = [r for r in json.loads(args.reference.read_text())["layers"]
                  if (r["block"], r["name"]) in wanted and r["dataflow"] in args.dataflows]
        else:
            ss = run_scalesim(ensure_venv(args.venv), cfg, layers, args.dataflows)
        return 0 if compare(ss, hw, cfg) else 1

    rows = run_scalesim(ensure_venv(args.venv), cfg, layers, args.dataflows)
    ok = check_formula(rows, cfg)
    write_json_atomic(args.reference, reference_payload(cfg, rows))
    print(f"wrote {args.reference}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
