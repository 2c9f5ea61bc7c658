"""Does dropping bits ever make a GEMM slower? This tree against a baseline commit, side by side.

Seeded random GEMM shapes (1..1024 per dimension) x bit pairs from {2,3,4,6,8,16}^2 on every preset;
a check compares each pair with the pair one step narrower in one operand (the other unchanged) and
counts an inversion when the narrower one takes more ``hwsim.estimate`` cycles. The baseline runs
from ``git archive <ref>`` in a fresh interpreter. Prints a table; asserts nothing.

    python benchmarks/mapper_monotonicity.py [--gemms 40] [--seed 0] [--baseline 9428a76]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import accelerators
import hwsim

BITS = (2, 3, 4, 6, 8, 16)
ROOT = Path(__file__).resolve().parents[1]


def inversions(gemms: int, seed: int) -> dict:
    """Per preset: (checks, inversions, worst relative slowdown) with this interpreter's hwsim."""
    rng = random.Random(seed)
    shapes = [tuple(rng.randint(1, 1024) for _ in range(3)) for _ in range(gemms)]
    out = {}
    for name in accelerators.available():
        accel = accelerators.load(name)
        checks = bad = 0
        worst = 0.0
        for shape in shapes:
            cycles = {(a, b): hwsim.estimate(hwsim.Gemm("g", *shape, a, b), accel).cycles for a in BITS for b in BITS}
            for (a, b), wide in cycles.items():
                ia, ib = BITS.index(a), BITS.index(b)
                narrower = ([(BITS[ia - 1], b)] if ia else []) + ([(a, BITS[ib - 1])] if ib else [])
                for narrow in narrower:
                    checks += 1
                    if cycles[narrow] > wide:
                        bad += 1
                        worst = max(worst, cycles[narrow] / wide - 1)
        out[name] = (checks, bad, worst)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemms", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default="9428a76", help="git ref of the old hwsim")
    parser.add_argument("--smoke", action="store_true", help="smallest setting, to check the script runs (the test suite does)")
    args = parser.parse_args()
    if args.smoke:
        args.gemms = 2
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "baseline.tar"
        subprocess.run(["git", "archive", "-o", archive, args.baseline, "hwsim", "accelerators"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT / 'benchmarks'}"}
        code = f"import json, mapper_monotonicity as m; print(json.dumps(m.inversions({args.gemms}, {args.seed})))"
        old = json.loads(subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True,
                                        text=True, check=True).stdout.splitlines()[-1])
    new = inversions(args.gemms, args.seed)
    print(f"{args.gemms} random GEMMs (seed {args.seed}) x bit pairs {BITS}^2: checks where one operand drops one "
          f"step; an inversion = the narrower pair takes more cycles. old = {args.baseline}, new = this tree")
    print(f"{'preset':<15}{'checks':>8}{'old inversions':>16}{'old worst':>11}{'new inversions':>16}{'new worst':>11}")
    for name, (checks, bad, worst) in new.items():
        if name not in old:  # a preset added since the baseline
            continue
        _, old_bad, old_worst = old[name]
        print(f"{name:<15}{checks:>8}{old_bad:>16}{100 * old_worst:>10.1f}%{bad:>16}{100 * worst:>10.1f}%")


if __name__ == "__main__":
    main()
