"""Top-1 evaluation in a sweep, before and after (issue 15): the allocations of a finished sweep folder
evaluated three ways on the demo model, in this one process, same images (``--limit``, default 500).

- "before": as ``pmq sweep`` evaluated until now: in the order the points arrived, on one torch thread
  (the parent shared the cores with the pricing workers);
- "all threads": the same order on every torch thread (what evaluating after pricing gives alone);
- "sorted + reuse": after pricing, sorted by bits, inside :func:`pmq.quant.reusing_prefixes`
  (what ``pmq sweep`` does now).

Prints seconds per evaluation, the speed-up, how many blocks ran, and checks that the three give the
same top-1 for every allocation. Run after a sweep, e.g.::

    pmq sweep --model demo --space examples/sweep_10k.yaml --out results/sweep_10k --limit 500
    python benchmarks/sweep_eval.py results/sweep_10k --count 200

``--smoke`` first runs ``examples/sweep_space.yaml`` at 32 images into ``./sweep_eval_smoke`` and uses that.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from pmq.allocation import BitAllocation
from pmq.experiment import Experiment
from pmq.quant import reusing_prefixes


def arrival_order(folder: Path) -> list[str]:
    """Allocation ids in the order a sweep first met them (points by number)."""
    seen: dict[str, None] = {}
    for path in sorted((folder / "points").glob("p*.json")):
        allocation_id = json.loads(path.read_text()).get("allocation_id")
        if allocation_id:
            seen.setdefault(allocation_id)
    return list(seen)


def smoke_sweep(out: Path) -> Path:
    from pmq.sweep import SweepConfig, SweepSettings, sweep

    space = Path(__file__).resolve().parents[1] / "examples" / "sweep_space.yaml"
    config = SweepConfig("demo", bit_choices=(4, 8), calibration_images=32, sensitivity_images=16, limit=32,
                         settings=SweepSettings(workers=1, progress=False))
    return sweep(space, out, config).out


def timed(experiment: Experiment, allocations: list[BitAllocation], limit: int, threads: int,
          reuse: bool) -> tuple[float, list[float], int]:
    """Seconds per evaluation, the top-1s and how many blocks ran."""
    torch.set_num_threads(threads)
    ran = []
    handles = [block.register_forward_pre_hook(lambda *_: ran.append(1)) for block in experiment.qv.model.blocks]
    try:
        with reusing_prefixes(experiment.qv) if reuse else nullcontext():
            start = time.perf_counter()
            top1 = [experiment.evaluate(allocation, limit, progress=False).top1 for allocation in allocations]
            seconds = (time.perf_counter() - start) / len(allocations)
    finally:
        for handle in handles:
            handle.remove()
    return seconds, top1, len(ran)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a finished pmq sweep folder of the demo model")
    parser.add_argument("--count", type=int, default=200, help="allocations, a seeded sample (0: all)")
    parser.add_argument("--limit", type=int, default=500, help="test images per evaluation (the sweep's --limit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a small sweep first, then all of it at 32 images "
                        "(to check the script runs: the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.folder, args.count, args.limit = smoke_sweep(Path("sweep_eval_smoke")), 0, 32
    elif args.folder is None:
        parser.error("give a sweep folder (or --smoke)")
    ids = arrival_order(args.folder)
    if args.count and args.count < len(ids):
        keep = set(random.Random(args.seed).sample(ids, args.count))
        ids = [i for i in ids if i in keep]
    allocations = {i: BitAllocation.load(args.folder / "allocations" / f"{i}.json") for i in ids}
    arrived = [allocations[i] for i in ids]
    by_bits = sorted(arrived, key=lambda a: [str(bits) for _, bits in a.items()])
    experiment = Experiment("demo")
    experiment.evaluate(arrived[0], args.limit, progress=False)  # calibration, data, warm-up
    threads = os.cpu_count() or 1
    rows = [("before: arrival order, 1 thread", *timed(experiment, arrived, args.limit, 1, False)),
            (f"all threads ({threads}): arrival order", *timed(experiment, arrived, args.limit, threads, False)),
            (f"sorted + reuse, {threads} threads", *timed(experiment, by_bits, args.limit, threads, True))]
    sorted_top1 = dict(zip(map(id, by_bits), rows[2][2], strict=True))
    same = rows[0][2] == rows[1][2] == [sorted_top1[id(a)] for a in arrived]
    print(f"{len(ids)} allocations of {args.folder} (load {os.getloadavg()[0]:.1f}), {args.limit} test images each, "
          f"{len(experiment.qv.model.blocks)} blocks per forward")
    print(f"{'evaluation':<40}{'s/eval':>8}{'speed-up':>10}{'blocks run':>12}")
    for label, seconds, _, ran in rows:
        print(f"{label:<40}{seconds:>8.3f}{rows[0][1] / seconds:>9.2f}x{ran / rows[0][3]:>11.0%}")
    print(f"same top-1 for every allocation: {same}")


if __name__ == "__main__":
    main()
