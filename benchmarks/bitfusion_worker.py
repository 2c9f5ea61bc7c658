"""Drive the public BitFusion simulator (hsharma35/bitfusion, unmodified) under Python 2.7.

Runs inside the BitFusion venv (numpy 1.16.6, pandas 0.24.2, graphviz 0.16), never in the
project's interpreter: ``benchmarks/fidelity.py`` starts it as a subprocess and reads one JSON
document from its stdout. The spec (JSON on stdin) names the two checkouts and what to run:

* ``{"mode": "networks", ...}``: every layer of the simulator's own benchmark list
  (``benchmarks.benchlist``, layer graphs from hsharma35/dnnweaver2) through ``get_cycles`` exactly
  as its ``SimulatorSweep`` does, with each layer's shape and the tiling/loop order the simulator
  chose;
* ``{"mode": "gemms", "gemms": [[name, m, k, n, a_bits, w_bits], ...]}``: GEMMs through
  ``get_FC_cycles(Ni=k, No=n, batch_size=m)`` (how the simulator runs a fully-connected layer).

Only the simulator's own functions are called; this file adds no cost model of its own.
"""
from __future__ import print_function  # noqa: UP010 -- this file runs under Python 2.7

import json
import os
import sys


def _setup(spec):
    sys.path[:0] = [spec["bitfusion"], spec["dnnweaver2"]]
    os.chdir(spec["bitfusion"])  # the simulator reads ./results/systolic_array_synth.csv
    from bitfusion.src.simulator.simulator import Simulator
    return Simulator(spec.get("config", "bf_e_conf.ini"), False)


def _stats_dict(stats):
    return {
        "cycles": int(stats.total_cycles),
        "memory_wait_cycles": int(stats.mem_stall_cycles),
        "dram_read_bits": int(stats.reads["dram"]),
        "dram_write_bits": int(stats.writes["dram"]),
        "wbuf_read": int(stats.reads["wgt"]), "wbuf_write": int(stats.writes["wgt"]),
        "ibuf_read": int(stats.reads["act"]), "ibuf_write": int(stats.writes["act"]),
        "obuf_read": int(stats.reads["out"]), "obuf_write": int(stats.writes["out"]),
    }


def _conv_run(sim, K, out, S, IC, OC, B, iprec, wprec, im2col):
    """What Simulator.get_conv_cycles does, keeping the chosen tiling and loop order."""
    from bitfusion.src.optimizer.optimizer import get_stats_fast, optimize_for_order
    params = (sim.accelerator, K, out, S, IC, OC, B, iprec, wprec, im2col, sim.get_energy_cost())
    _, tiling, order = optimize_for_order(params)
    stats = get_stats_fast(params, tiling, order)
    row = _stats_dict(stats)
    row.update({
        "K": K, "O": out, "S": S, "IC": IC, "OC": OC, "B": B, "a_bits": iprec, "w_bits": wprec,
        "im2col": bool(im2col),
        "tiling": dict((loop, list(tiling[loop])) for loop in tiling),
        "order": list(order),
    })
    return row


def _layer_params(op):
    """The arguments Simulator.get_cycles derives from a dnnweaver2 op (None for non-GEMM ops)."""
    from dnnweaver2.tensorOps.cnn import Convolution, MatMul
    if isinstance(op, Convolution):
        B, _, _, IC = op.data.shape
        _, out, _, OC = op.output_tensors.shape
        _, K, _, _ = op.weights.shape
        _, S, _, _ = op.stride
        return K, out, S, IC, OC, B, op.data.dtype.bits, op.weights.dtype.bits, op.data.op is None
    if isinstance(op, MatMul):
        OC, IC = op.weights.shape
        return 1, 1, 1, IC, OC, op.data.shape[0], op.data.dtype.bits, op.weights.dtype.bits, False
    return None


def run_networks(sim, spec):
    import bitfusion.src.benchmarks.benchmarks as benchmarks
    rows = []
    for network in spec.get("networks") or benchmarks.benchlist:
        graph = benchmarks.get_bench_nn(network, WRPN=True)  # as SimulatorSweep.sweep does
        for name, op in graph.op_registry.items():
            params = _layer_params(op)
            if params is None:
                continue
            row = _conv_run(sim, *params)
            official = sim.get_cycles(op)[0]  # the simulator's own entry point, for the record
            assert int(official.total_cycles) == row["cycles"], (network, name)
            row.update({"network": network, "layer": name})
            rows.append(row)
            print("  bitfusion {} {}: {} cycles".format(network, name, row["cycles"]), file=sys.stderr)
    return rows


def run_gemms(sim, spec):
    rows = []
    for name, m, k, n, a_bits, w_bits in spec["gemms"]:
        row = _conv_run(sim, 1, 1, 1, k, n, m, a_bits, w_bits, False)
        row.update({"name": name, "m": m, "k": k, "n": n})
        rows.append(row)
        print("  bitfusion {} a{}w{} m={}: {} cycles".format(name, a_bits, w_bits, m, row["cycles"]),
              file=sys.stderr)
    return rows


def main():
    spec = json.load(sys.stdin)
    result, sys.stdout = sys.stdout, sys.stderr  # the simulator prints notes; stdout carries only the JSON
    sim = _setup(spec)
    acc = sim.accelerator
    runner = {"networks": run_networks, "gemms": run_gemms}[spec["mode"]]
    out = {
        "config": {"N": acc.N, "M": acc.M, "pmax": acc.pmax, "pmin": acc.pmin,
                   "if_width": acc.mem_if_width, "sram_bytes": dict(acc.sram),
                   "frequency": acc.frequency, "file": spec.get("config", "bf_e_conf.ini")},
        "rows": runner(sim, spec),
    }
    json.dump(out, result)


if __name__ == "__main__":
    main()
