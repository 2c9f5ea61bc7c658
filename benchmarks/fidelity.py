"""hwsim against the reference simulators, on the references' own mappings: per-layer tables.

For each reference layer, hwsim prices the reference's mapping (``hwsim.ReferenceMapper``: the
plan the reference itself chose, replayed) with its one cost model, and the table shows
reference vs hwsim with % differences for cycles, DRAM bits and energy:

* BitFusion's public simulator (hsharma35/bitfusion, unmodified, Python 2.7, ``bf_e_conf.ini``):
  DeiT-S block GEMMs at a/w in {8,4,2}^2, batch 1 and 16, and the layers of its own benchmark
  networks (whose per-network totals are also shown). Its energy is its own formula
  (``Stats.get_energy``: array pJ/cycle x busy cycles + SRAM pJ/bit x accesses + 15 pJ/DRAM bit)
  on its own counters, with the constants the bitfusion preset copies from it.
* SCALE-Sim 3.0.0 (unmodified, ``InterfaceBandwidth: USER``) on topologies from its repository;
  it reports no energy.

Sources of the reference numbers:

* default: run the references now, from ``--peers`` (default ``$PMQ_PEERS``): ``bitfusion/`` and
  ``dnnweaver2/`` checkouts with ``bitfusion-venv/`` (Python 2.7: numpy 1.16.6, pandas 0.24.2,
  graphviz 0.16), ``scale-sim-v3/`` with ``scalesim-venv/`` (``scalesim==3.0.0 "numpy<2"``). A
  missing peer is skipped with a one-line message;
* ``--from-json``: the committed reference data in ``tests/hwsim/data`` (what the tests check);
* ``--write-reference``: run the references and rewrite that data.

Usage::

    python benchmarks/fidelity.py --from-json
    PMQ_PEERS=/path/to/peers python benchmarks/fidelity.py --scalesim-runs 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "hwsim" / "data"
BITFUSION_JSON, SCALESIM_JSON = DATA / "bitfusion_reference.json", DATA / "scalesim_user_reference.json"
TOPOLOGIES = DATA / "scalesim_topologies"
DEIT = {"tokens": 197, "dim": 384, "mlp": 1536, "head_dim": 64}
SCALESIM_RUNS = [  # (topology in SCALE-Sim's repository, GEMM?, rows, cols, dataflow, write bw, read bw)
    ("topologies/GEMM_mnk/test_mnk_input.csv", True, 32, 32, "ws", 10, 10),
    ("topologies/conv_nets/test.csv", False, 32, 32, "os", 10, 10),
    ("topologies/GEMM_mnk/test_mnk_input.csv", True, 16, 64, "is", 50, 50),
    ("topologies/conv_nets/test.csv", False, 16, 64, "ws", 50, 50),
    ("topologies/GEMM_mnk/vit_s.csv", True, 32, 32, "ws", 10, 10),
]


def deit_gemm_jobs() -> list[list]:
    """[name, m, k, n, a_bits, w_bits]: a DeiT-S block's GEMMs, batch 1 and 16 (per-head matmuls once)."""
    t, d, mlp, hd = DEIT["tokens"], DEIT["dim"], DEIT["mlp"], DEIT["head_dim"]
    shapes = [(name, t * batch, k, n) for batch in (1, 16)
              for name, k, n in (("qkv", d, 3 * d), ("proj", d, d), ("fc1", d, mlp), ("fc2", mlp, d))]
    shapes += [("q_kT", t, hd, t), ("attn_v", t, t, hd)]
    return [[name, m, k, n, a, w] for a in (8, 4, 2) for w in (8, 4, 2) for name, m, k, n in shapes]


def _git_head(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def run_bitfusion(peers: Path) -> dict | None:
    """Run the BitFusion simulator on its networks and the DeiT-S GEMMs; None (with a note) if absent."""
    python, checkout, graphs = peers / "bitfusion-venv" / "bin" / "python", peers / "bitfusion", peers / "dnnweaver2"
    if not (python.exists() and checkout.is_dir() and graphs.is_dir()):
        print(f"skip BitFusion: need {python}, {checkout} and {graphs} (see this script's docstring)")
        return None
    worker = REPO / "benchmarks" / "bitfusion_worker.py"
    results = {}
    for mode, extra in (("networks", {}), ("gemms", {"gemms": deit_gemm_jobs()})):
        spec = {"mode": mode, "bitfusion": str(checkout), "dnnweaver2": str(graphs), **extra}
        print(f"running BitFusion's simulator ({mode}) ...", flush=True)
        done = subprocess.run([str(python), str(worker)], input=json.dumps(spec), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"BitFusion worker failed: {done.stderr.strip().splitlines()[-1]}")
        results[mode] = json.loads(done.stdout)
    return {
        "simulator": f"hsharma35/bitfusion @ {_git_head(checkout)} (unmodified), Python 2.7",
        "layer_graphs": f"hsharma35/dnnweaver2 @ {_git_head(graphs)}",
        "config": results["gemms"]["config"],
        "commands": {"regenerate": "python benchmarks/fidelity.py --write-reference",
                     "worker": "<bitfusion-venv>/bin/python benchmarks/bitfusion_worker.py < spec (mode networks|gemms)"},
        "gemm_jobs": deit_gemm_jobs(),
        "networks": results["networks"]["rows"],
        "gemms": results["gemms"]["rows"],
    }


def run_scalesim(peers: Path, runs: int) -> dict | None:
    python, checkout = peers / "scalesim-venv" / "bin" / "python", peers / "scale-sim-v3"
    if not (python.exists() and checkout.is_dir()):
        print(f"skip SCALE-Sim: need {python} and {checkout} (see this script's docstring)")
        return None
    worker, out = REPO / "benchmarks" / "scalesim_worker.py", []
    with tempfile.TemporaryDirectory(prefix="fidelity-scalesim-") as tmp:
        for i, (topology, gemm, rows, cols, dataflow, bw, read_bw) in enumerate(SCALESIM_RUNS[:runs]):
            spec = {"topology": str(checkout / topology), "gemm": gemm, "rows": rows, "cols": cols,
                    "dataflow": dataflow, "bandwidth": bw, "read_bandwidth": read_bw, "interface": "USER",
                    "sram_kb": [64, 64, 64], "work": f"{tmp}/run{i}"}
            (Path(tmp) / f"spec{i}.json").write_text(json.dumps(spec))
            print(f"running SCALE-Sim on {topology} {rows}x{cols} {dataflow} ...", flush=True)
            done = subprocess.run(["nice", str(python), str(worker), f"{tmp}/spec{i}.json"], capture_output=True,
                                  text=True)
            if done.returncode:
                raise SystemExit(f"SCALE-Sim worker failed: {done.stderr.strip().splitlines()[-1]}")
            run = json.loads(done.stdout)
            run["spec"]["topology"] = topology
            out.append(run)
    return {"scalesim_version": "3.0.0", "topologies_from": f"scalesim-project/scale-sim-v3 @ {_git_head(checkout)}",
            "runs": out}


# --------------------------------------------------------------------------- hwsim side


def bitfusion_op(row: dict):
    """The hwsim GEMM of a reference row (a convolution keeps its geometry for the replay)."""
    from hwsim.reference.bitfusion import ConvShape, gemm_of

    if "network" not in row:
        return gemm_of(ConvShape.gemm(row["m"], row["k"], row["n"], row["a_bits"], row["w_bits"]), row["name"])
    shape = ConvShape(row["K"], row["O"], row["S"], row["IC"], row["OC"], row["B"], row["a_bits"], row["w_bits"],
                      row["im2col"])
    return gemm_of(shape, f"{row['network']}/{row['layer']}")


def bitfusion_energy_pj(row: dict, accel) -> float:
    """The simulator's own energy formula on its counters (constants as copied into the preset)."""
    sram, config = accel.sram_energy, accel.config
    busy = row["cycles"] - row["memory_wait_cycles"]
    pairs = (("wbuf", "filter"), ("ibuf", "ifmap"), ("obuf", "ofmap"))
    energy = busy * config["energy"]["mac"]["array_pj_per_cycle"]
    energy += sum(row[f"{ours}_read"] * sram.read_pj_per_bit[buf] + row[f"{ours}_write"] * sram.write_pj_per_bit[buf]
                  for ours, buf in pairs)
    return energy + (row["dram_read_bits"] + row["dram_write_bits"]) * accel.dram.energy_pj_per_bit


def _pct(ours: float, theirs: float) -> str:
    return f"{100 * (ours / theirs - 1):+6.1f}%" if theirs else "    —  "


def bitfusion_tables(data: dict) -> None:
    import accelerators
    import hwsim

    accel, mapper = accelerators.load("bitfusion"), hwsim.ReferenceMapper()
    header = (f"{'layer':<34}{'a':>2}{'w':>2}{'ref cycles':>12}{'hwsim':>12}{'diff':>8}"
              f"{'ref DRAM b':>14}{'hwsim':>14}{'diff':>8}{'ref uJ':>9}{'hwsim':>9}{'diff':>8}")
    totals: dict = defaultdict(lambda: [0, 0])
    for title, rows in (("DeiT-S block GEMMs (per instance; per-head matmuls: one head)", data["gemms"]),
                        ("its benchmark networks, per layer (batch 16)", data["networks"])):
        print(f"\nBitFusion simulator vs hwsim on the simulator's own mapping: {title}\n{header}")
        for row in rows:
            cost = hwsim.estimate(bitfusion_op(row), accel, mapper=mapper)
            label = f"{row['name']} m={row['m']}" if "name" in row else f"{row['network']} {row['layer']}"
            ref_dram, dram = row["dram_read_bits"] + row["dram_write_bits"], cost.dram_read_bits + cost.dram_write_bits
            ref_e, energy = bitfusion_energy_pj(row, accel) / 1e6, cost.energy_pj / 1e6
            print(f"{label[:34]:<34}{row['a_bits']:>2}{row['w_bits']:>2}{row['cycles']:>12,}{cost.cycles:>12,}"
                  f"{_pct(cost.cycles, row['cycles']):>8}{ref_dram:>14,}{dram:>14,}{_pct(dram, ref_dram):>8}"
                  f"{ref_e:>9.2f}{energy:>9.2f}{_pct(energy, ref_e):>8}")
            if "network" in row:
                totals[row["network"]][0] += row["cycles"]
                totals[row["network"]][1] += cost.cycles
    print(f"\nwhole networks (cycles, sum of layers): {'network':<10}{'reference':>14}{'hwsim':>14}{'diff':>8}")
    for network, (theirs, ours) in totals.items():
        print(f"{'':40}{network:<10}{theirs:>14,}{ours:>14,}{_pct(ours, theirs):>8}")


def scalesim_tables(data: dict) -> None:
    import accelerators
    import hwsim

    base = accelerators.load("int8_systolic").config
    print("\nSCALE-Sim 3.0.0 (USER bandwidth) vs hwsim replaying SCALE-Sim's folds, ports and prefetch windows"
          " (int8_systolic; DRAM in 1-byte words)")
    print(f"{'run':<34}{'layer':<10}{'compute':>9}{'hwsim':>9}{'total':>10}{'hwsim':>10}{'diff':>8}"
          f"{'DRAM words':>12}{'hwsim':>11}{'diff':>8}{'ofmap wr':>10}{'hwsim':>10}{'diff':>8}")
    summary: dict[str, list] = {}  # run -> [layers, worst |total diff|, worst |DRAM diff|]
    for run in data["runs"]:
        spec = run["spec"]
        config = copy.deepcopy(base)
        config["array"].update(rows=spec["rows"], cols=spec["cols"], dataflow=spec["dataflow"])
        config["dram"].update(bandwidth_bits_per_cycle=8 * spec["bandwidth"],
                              read_bandwidth_bits_per_cycle=8 * spec["read_bandwidth"])
        accel = accelerators.from_dict(config, "int8_systolic (SCALE-Sim run)")
        workload = hwsim.Workload.from_topology_csv(TOPOLOGIES / Path(spec["topology"]).name)
        tag = (f"{Path(spec['topology']).stem} {spec['rows']}x{spec['cols']} {spec['dataflow']} "
               f"rd{spec['read_bandwidth']} wr{spec['bandwidth']}")
        for op, layer in zip(workload.ops, run["layers"], strict=True):
            plan = hwsim.ReferenceMapper().plan(op, accel)
            cost = hwsim.cost_plan(plan, accel)
            theirs = layer["dram_ifmap_reads"] + layer["dram_filter_reads"] + layer["dram_ofmap_writes"]
            ours = (cost.dram_read_bits + cost.dram_write_bits) // 8
            print(f"{tag[:34]:<34}{op.name[:10]:<10}{layer['compute_cycles'] + 1:>9,}{cost.compute_cycles:>9,}"
                  f"{layer['total_cycles']:>10,}{cost.cycles:>10,}{_pct(cost.cycles, layer['total_cycles']):>8}"
                  f"{theirs:>12,}{ours:>11,}{_pct(ours, theirs):>8}{layer['dram_ofmap_writes']:>10,}"
                  f"{cost.dram_write_bits // 8:>10,}{_pct(cost.dram_write_bits // 8, layer['dram_ofmap_writes']):>8}")
            worst = summary.setdefault(tag, [0, 0.0, 0.0])
            worst[0] += 1
            worst[1] = max(worst[1], abs(cost.cycles / layer["total_cycles"] - 1))
            worst[2] = max(worst[2], abs(ours / theirs - 1))
    within = sum(1 for w in summary.values() if max(w[1], w[2]) <= 0.10)
    print(f"\nper configuration, largest |diff| over its layers ({within}/{len(summary)} configurations within 10%)")
    print(f"{'run':<34}{'layers':>7}{'total':>8}{'DRAM':>8}")
    for tag, (layers, total, dram) in summary.items():
        print(f"{tag[:34]:<34}{layers:>7}{100 * total:>7.1f}%{100 * dram:>7.1f}%")


def _write(path: Path, payload: dict) -> None:
    sys.path.insert(0, str(REPO))
    from hwsim.workload import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")


def _write_reference(bitfusion: dict | None, scalesim: dict | None) -> None:
    """Rewrite the committed data (keeping its notes; SCALE-Sim runs replace those with the same spec)."""
    if bitfusion is not None:
        _write(BITFUSION_JSON, {**json.loads(BITFUSION_JSON.read_text()), **bitfusion})
    if scalesim is not None:
        old = json.loads(SCALESIM_JSON.read_text())
        fresh = {json.dumps(run["spec"], sort_keys=True) for run in scalesim["runs"]}
        kept = [run for run in old["runs"] if json.dumps(run["spec"], sort_keys=True) not in fresh]
        _write(SCALESIM_JSON, {**old, **scalesim, "runs": kept + scalesim["runs"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--from-json", action="store_true", help="print from the committed reference data")
    parser.add_argument("--write-reference", action="store_true", help="run the references and rewrite the data")
    parser.add_argument("--peers", type=Path, default=os.environ.get("PMQ_PEERS"),
                        help="folder with the peer checkouts and venvs (default: $PMQ_PEERS)")
    parser.add_argument("--scalesim-runs", type=int, default=2, help="how many SCALE-Sim runs (slow: minutes each)")
    parser.add_argument("--smoke", action="store_true", help="the committed data only (= --from-json), to check the script runs (the test suite does)")
    args = parser.parse_args(argv)
    args.from_json = args.from_json or args.smoke
    sys.path.insert(0, str(REPO))
    if args.from_json:
        bitfusion, scalesim = json.loads(BITFUSION_JSON.read_text()), json.loads(SCALESIM_JSON.read_text())
    elif args.peers is None:
        print("skip the references: no --peers (or $PMQ_PEERS); use --from-json for the committed data")
        return 0
    else:
        bitfusion, scalesim = run_bitfusion(args.peers), run_scalesim(args.peers, args.scalesim_runs)
        if args.write_reference:
            _write_reference(bitfusion, scalesim)
    if bitfusion is not None:
        bitfusion_tables(bitfusion)
    if scalesim is not None:
        scalesim_tables(scalesim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
