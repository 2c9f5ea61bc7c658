"""Co-design sweep throughput: points per second on local processes vs a dask LocalCluster (issue 7).

The sweep: deit_small_patch16_224 (timm, random weights, seed 0), Ω from the pmq metric on one batch
of 8 random images (computed once, cached by content hash), 40 accelerator designs (10 random
samples of each preset's array/buffer/bandwidth/clock parameters) x 5 latency budgets = 200 points.
Top-1 is a stand-in (exp(-Ω)), so the timing is the per-design pricing the executors distribute
(hwsim cost table, exact Pareto frontier, one whole-model estimate per budget); real evaluation
runs in the parent once per distinct allocation whichever executor is used.

Each executor runs with each worker count (default 1 and 2: the scaling figure); the time of each
includes starting its workers (spawned processes; the cluster's start is also shown on its own), not
closing the cluster afterwards (a cluster outlives its sweeps; the local pool is gone when the sweep returns).
Prints points/s, per worker and relative to one worker (with the load average after each run: the
machine is shared), dask's per-worker throughput relative to local, checks that every run wrote a
byte-identical table, and draws the scaling figure (``docs/figures/sweep_scaling.png``). Run: ``python benchmarks/sweep_speed.py``
(needs ``pip install 'pmq[distributed]'``).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

DESIGNS = """
designs:
  - base: [int8_systolic, bitfusion]
    random:
      samples: {samples}
      seed: 0
      parameters:
        array.rows: [8, 16, 32, 64]
        array.cols: [8, 16, 32, 64]
        buffers.ifmap: [16384, 32768, 65536, 131072]
        buffers.filter: [32768, 65536, 131072]
        dram.bandwidth_bits_per_cycle: {{min: 64, max: 512}}
        clock_hz: {{min: 2.0e+8, max: 1.0e+9, log: true}}
  - base: [stripes, loom]
    random:
      samples: {samples}
      seed: 0
      parameters:
        array.tiles: [4, 8, 16]
        array.windows: [8, 16, 32]
        dram.bandwidth_bits_per_cycle: {{min: 64, max: 512}}
        clock_hz: {{min: 2.0e+8, max: 1.0e+9, log: true}}
"""
BUDGETS = ["1x:W8A8", "0.8x:W8A8", "0.6x:W8A8", "0.5x:W8A8", "0.4x:W8A8"]


def deit_inputs(images: int = 8):
    """Ω of DeiT-S (random weights) by the pmq metric on one random batch, its workload, a stand-in top-1."""
    import timm
    import torch

    from pmq.allocation import BitAllocation
    from pmq.io import provenance
    from pmq.quant import quantize_model
    from pmq.search import DEFAULT_BIT_CHOICES, bit_pairs
    from pmq.sensitivity import compute_sensitivity
    from pmq.sweep import SweepInputs

    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    qv = quantize_model(model)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(images, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 1000, (images,), generator=generator)
    sensitivity = compute_sensitivity(qv, batch, labels, metric="pmq", bits=DEFAULT_BIT_CHOICES, progress=False)
    names = qv.component_names()
    omega = {name: {b: sensitivity.omega(name, b) for b in bit_pairs(DEFAULT_BIT_CHOICES)} for name in names}
    trace = qv.trace

    def stand_in_top1(allocation: BitAllocation) -> dict[str, float]:
        return {"top1": math.exp(-sum(omega[name][bits] for name, bits in allocation.items()))}

    tag = "deit_small_patch16_224 (random init)"
    return SweepInputs(names, omega, trace, tag, stand_in_top1, "stand-in top-1 = exp(-omega)",
                       provenance(model_tag=tag, sensitivity_s=sensitivity.wall_time_s))


def scaling_figure(rows: list[tuple[str, int, float, float]], points: int, path: Path) -> Path:
    """Points/s against workers, each executor a line; per-worker throughput dashed (the 1 → 2 scaling)."""
    from pmq.plots.style import MARKERS, SINGLE_COLUMN_IN, new_figure, save, style

    with style():
        fig = new_figure(SINGLE_COLUMN_IN, 2.3)
        ax = fig.add_subplot()
        for index, name in enumerate(dict.fromkeys(row[0] for row in rows)):
            mine = [(workers, points / wall) for executor, workers, wall, _ in rows if executor == name]
            workers, rate = zip(*mine, strict=True)
            line, = ax.plot(workers, rate, marker=MARKERS[index], label=f"{name}: all workers")
            ax.plot(workers, [r / w for w, r in mine], marker=MARKERS[index], linestyle="--",
                    color=line.get_color(), label=f"{name}: per worker")
        ax.set_xticks(sorted({row[1] for row in rows}))
        ax.set_xlabel("workers")
        ax.set_ylabel("DeiT-S sweep points / s")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right")
        (written,) = save(fig, [path])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="random designs per preset (4 presets)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to run each executor with (the scaling figure)")
    parser.add_argument("--figure", type=Path, default=Path(__file__).parents[1] / "docs/figures/sweep_scaling.png",
                        help="where to write the scaling figure (PNG)")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.workers = 1, [1]

    import yaml
    from distributed import LocalCluster

    from pmq.sweep import run_sweep, space_from_dict

    start = time.perf_counter()
    inputs = deit_inputs()
    prepare_s = time.perf_counter() - start
    space = space_from_dict({**yaml.safe_load(DESIGNS.format(samples=args.samples)), "budgets": BUDGETS}, "bench")
    points = len(space.designs) * len(BUDGETS)
    rows, tables, loads = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for workers in args.workers:
            t = time.perf_counter()
            local = run_sweep(space, inputs, tmp / f"local{workers}", "latency", workers=workers, progress=False)
            rows.append(("local processes", workers, time.perf_counter() - t, 0.0))
            tables.append(local.table.read_bytes())
            loads.append(os.getloadavg()[0])

            t = time.perf_counter()
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster:
                cluster_s = time.perf_counter() - t
                dask = run_sweep(space, inputs, tmp / f"dask{workers}", "latency", executor="dask",
                                 scheduler=cluster.scheduler_address, progress=False)
                swept = time.perf_counter() - t  # the sweep is done; closing the cluster is not part of it
            rows.append(("dask LocalCluster", workers, swept, cluster_s))
            tables.append(dask.table.read_bytes())
            loads.append(os.getloadavg()[0])
        failed = local.failed

    print(f"deit_small_patch16_224: {len(space.designs)} designs x {len(BUDGETS)} budgets = {points} points "
          f"({failed} failed: budget below a design's cheapest allocation); Ω + workload prepared once in "
          f"{prepare_s:.1f} s; {os.cpu_count()} CPUs")
    print(f"{'executor':<20}{'workers':>8}{'wall s':>10}{'start s':>10}{'points/s':>10}{'per worker':>11}"
          f"{'vs 1 worker':>12}{'load':>7}")
    single = {name: wall for name, workers, wall, _ in rows if workers == min(args.workers)}
    for (name, workers, wall, started), load in zip(rows, loads, strict=True):
        print(f"{name:<20}{workers:>8}{wall:>10.1f}{started:>10.1f}{points / wall:>10.2f}"
              f"{points / wall / workers:>11.2f}{single[name] / wall:>11.2f}x{load:>7.1f}")
    for workers in args.workers:
        local_wall, dask_wall = (wall for _, w, wall, _ in rows if w == workers)
        print(f"dask per-worker throughput vs local at {workers} worker(s): {local_wall / dask_wall:.2f}")
    print(f"tables identical across executors and worker counts: {len(set(tables)) == 1}")
    if not args.smoke:
        print(f"figure: {scaling_figure(rows, points, args.figure)}")


if __name__ == "__main__":
    main()
