"""Fault injection: the whole battery of bad bytes, unusable output folders, SIGKILLs and concurrent
runs against the real ``pmq`` command, one fresh process per case.

Prints one row per case: what was done | exit code | whether a traceback reached the user | the
files left in the output folder (hidden ones included) | the verdict against what PMQ promises
(one stderr line and exit 2 for user errors, nothing half-written, complete or visibly incomplete
folders, a refused second run).

    python benchmarks/faults.py            # every case (a few minutes on 2 cores)
    python benchmarks/faults.py --smoke    # the cases that need no model evaluation (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEARCH = ["search", "--model", "demo", "--objective", "bops", "--budget", "0.5x:W8A8", "--bit-choices", "4,8",
          "--calibration-images", "16", "--limit", "32", "--json"]
SIMULATE = ["simulate", "--model", "demo", "--accelerator", "bitfusion", "--json"]
TINY_SPACE = "designs:\n  - base: bitfusion\n    grid:\n      array.rows: [8, 16]\nbudgets: ['0.7x:W8A8']\nobjective: latency\n"
SWEEP = ["sweep", "--model", "demo", "--bit-choices", "4,8", "--calibration-images", "16", "--limit", "32",
         "--workers", "1", "--json"]
KILL_AFTER = """
import os, signal, sys
import {module} as target
real, calls = target.{attr}, []
def killing(*args, **kwargs):
    result = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == {after}:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
target.{attr} = killing
from pmq.cli import main
main(sys.argv[1:])
"""


@dataclass
class Outcome:
    case: str
    code: int | str
    traceback: bool
    files: str
    verdict: str


def env(**extra: str) -> dict[str, str]:
    """The child's environment: this repository first (``main`` points PMQ_CACHE_DIR at the battery's folder)."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def other_budget(argv: list[str]) -> list[str]:
    """The same search at another budget (a second run into the same folder)."""
    i = argv.index("--budget") + 1
    return [*argv[:i], "0.3x:W8A8", *argv[i + 1:]]


def pmq(argv: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmq.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env(**extra), timeout=900)


def killed(argv: list[str], cwd: Path, module: str, attr: str, after: int) -> subprocess.CompletedProcess:
    code = KILL_AFTER.format(module=module, attr=attr, after=after)
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd, env=env(),
                          timeout=900)


def listing(folder: Path) -> str:
    if not folder.exists():
        return "(no folder)"
    if folder.is_file():
        return "(the file, unchanged)" if folder.read_text(errors="replace") == "keep\n" else "(the file, CHANGED)"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if len(names) > 6:
        return ", ".join(names[:5]) + f", ... ({len(names)} files)"
    return ", ".join(names) or "(empty)"


def one_line_error(proc: subprocess.CompletedProcess, needle: str = "") -> bool:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "warning" not in line]
    return str(proc.returncode).split()[0] == "2" and len(lines) == 1 and needle in lines[0]


def manifest_state(folder: Path) -> str:
    """'complete' (the manifest checks out), 'incomplete' (no manifest) or 'INCONSISTENT'."""
    sys.path.insert(0, str(REPO))
    from pmq.errors import PMQError
    from pmq.runs import RUN_FILE, read_run

    if not (folder / RUN_FILE).exists():
        return "incomplete"
    try:
        read_run(folder)
    except PMQError:
        return "INCONSISTENT"
    return "complete"


def read_only_folder(base: Path) -> Path:
    folder = base / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    (folder / "probe").unlink()
    return Path("/sys/kernel")  # root ignores modes; sysfs is read-only to everyone


class Battery:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.rows: list[Outcome] = []

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, case: str, proc: subprocess.CompletedProcess, out: Path | None, ok: bool) -> None:
        traceback = "Traceback" in proc.stderr
        self.rows.append(Outcome(case, proc.returncode, traceback, listing(out) if out is not None else "-",
                                 "ok" if ok and not traceback else "FAIL"))
        print(f"  {case}: exit {proc.returncode}", file=sys.stderr, flush=True)

    def run(self, case: str, action: Callable[[Path], tuple[subprocess.CompletedProcess, Path | None, bool]]) -> None:
        base = self.folder(f"case{len(self.rows):02d}")
        proc, out, ok = action(base)
        self.record(case, proc, out, ok)


def quick_cases(b: Battery) -> None:
    """Bad input that must fail in one line before any work (no model evaluation)."""
    def out_is_file(argv):
        def action(base):
            target = base / "out.txt"
            target.write_text("keep\n")
            proc = pmq([*argv, "--out", str(target)], base)
            return proc, target, one_line_error(proc, "is an existing file")
        return action

    def out_read_only(argv):
        def action(base):
            target = read_only_folder(base) / "new"
            proc = pmq([*argv, "--out", str(target)], base)
            return proc, target, one_line_error(proc, "not writable")
        return action

    space = b.work / "space.yaml"
    space.write_text(TINY_SPACE)
    commands = {"simulate": SIMULATE, "search": SEARCH, "sweep": [*SWEEP, "--space", str(space)], "demo": ["demo"]}
    for name, argv in commands.items():
        b.run(f"{name} --out is a file", out_is_file(argv))
    for name, argv in commands.items():
        b.run(f"{name} --out read-only", out_read_only(argv))

    def bad_bytes(kind):
        def action(base):
            path = base / {"checkpoint": "model.pt", "accelerator": "acc.yaml", "space": "space.yaml",
                           "workload": "topo.csv"}[kind]
            path.write_bytes({"checkpoint": os.urandom(4096), "accelerator": b"kind: bitfusion\nname: \xff\xfe\n",
                              "space": b"budgets: ['\xff']\n", "workload": b"Layer,M,N,K,\nfc\xff,1,2,3,\n"}[kind])
            argv = {"checkpoint": ["evaluate", "--model", "demo", "--checkpoint", str(path)],
                    "accelerator": ["simulate", "--model", "demo", "--accelerator", str(path)],
                    "space": [*SWEEP, "--space", str(path), "--out", str(base / "out")],
                    "workload": ["simulate", "--workload", str(path), "--accelerator", "bitfusion"]}[kind]
            proc = pmq(argv, base)
            return proc, base / "out", one_line_error(proc, path.name)
        return action

    for kind in ("checkpoint", "accelerator", "space", "workload"):
        b.run(f"non-UTF-8 / random bytes: {kind}", bad_bytes(kind))

    def bounded(key, value):
        def action(base):
            import yaml

            data = yaml.safe_load((REPO / "accelerators" / "presets" / "bitfusion.yaml").read_text())
            section, _, leaf = key.rpartition(".")
            (data[section] if section else data)[leaf] = value
            path = base / "acc.yaml"
            path.write_text(yaml.safe_dump(data))
            proc = pmq([*SIMULATE, "--accelerator", str(path), "--out", str(base / "out")], base)
            return proc, base / "out", one_line_error(proc, key)
        return action

    b.run("accelerator clock_hz: .inf", bounded("clock_hz", float("inf")))
    b.run("accelerator array.rows: 10^6 (10^12 PEs)", bounded("array.rows", 10**6))

    def pretrained_offline(base):
        start = time.perf_counter()
        proc = pmq(["evaluate", "--model", "deit_tiny_patch16_224", "--pretrained", "--data", str(base)], base,
                   HF_HUB_CACHE=str(base / "hub"))
        proc.returncode = f"{proc.returncode} after {time.perf_counter() - start:.0f} s"  # was ~52 s of retries
        return proc, None, one_line_error(proc, str(base / "hub"))

    b.run("--pretrained, weights not cached, offline", pretrained_offline)

    def simulate_no_out(base):
        proc = pmq(SIMULATE, base)
        return proc, base, proc.returncode == 0 and not list(base.iterdir())

    b.run("simulate without --out", simulate_no_out)

    def locked(base):
        out = base / "out"
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pmq.runs import RunFolder; "
                                   "RunFolder(sys.argv[1], 'search').claim(); print('ok', flush=True); time.sleep(120)",
                                   str(out)], stdout=subprocess.PIPE, text=True, env=env())
        holder.stdout.readline()
        proc = pmq([*SIMULATE, "--out", str(out)], base)
        holder.kill()
        holder.wait()
        return proc, out, one_line_error(proc, "in use by another pmq run")

    b.run("simulate into a folder another run holds", locked)


def search_cases(b: Battery) -> None:
    """Cases that run real searches and sweeps (a minute or more each on 2 cores)."""
    def cache_unwritable(home_only):
        def action(base):
            ro = read_only_folder(base)
            extra = {"HOME": str(ro / "home")} if home_only else {"PMQ_CACHE_DIR": str(ro / "cache")}
            child = env(**extra)
            if home_only:
                child.pop("PMQ_CACHE_DIR", None)
            out = base / "out"
            proc = subprocess.run([sys.executable, "-m", "pmq.cli", *SEARCH, "--out", str(out)], capture_output=True,
                                  text=True, cwd=base, env=child, timeout=900)
            return proc, out, proc.returncode == 0 and "sensitivity cache not written" in proc.stderr
        return action

    b.run("search, PMQ_CACHE_DIR read-only", cache_unwritable(False))
    b.run("search, $HOME read-only, no PMQ_CACHE_DIR", cache_unwritable(True))

    def kill_second_run(module, attr, after, expected):
        """A finished search, then a second one into the same folder killed right after the
        ``after``-th call of ``module.attr``; the folder must then read as ``expected``."""
        def action(base):
            out = base / "out"
            first = pmq([*SEARCH, "--out", str(out)], base)
            assert first.returncode == 0, first.stderr
            proc = killed([*other_budget(SEARCH), "--out", str(out)], base, module, attr, after)
            state = manifest_state(out)
            proc.returncode = f"{proc.returncode} ({state})"
            return proc, out, state == expected
        return action

    # publishing: 2 files staged, 2 moved in, no manifest yet -> the folder reads as incomplete
    b.run("SIGKILL while search publishes", kill_second_run("os", "replace", 4, "incomplete"))
    # staging: half of the new set written -> the old set is untouched and still checks out
    b.run("SIGKILL while search writes (staging)", kill_second_run("hwsim.files", "atomic_write", 1, "complete"))

    def rerun_after_kill(base):
        out = base / "out"
        argv = [*SEARCH, "--out", str(out)]
        killed(argv, base, "hwsim.files", "atomic_write", after=1)
        proc = pmq(argv, base)
        state = manifest_state(out)
        return proc, out, proc.returncode == 0 and state == "complete" and ".pmq-staging" not in listing(out)

    b.run("rerun after SIGKILL: leftovers swept", rerun_after_kill)

    def concurrent(base):
        out = base / "out"
        procs = [subprocess.Popen([sys.executable, "-m", "pmq.cli", *SEARCH, "--out", str(out)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=base, env=env()) for _ in range(2)]
        results = [p.communicate(timeout=900) for p in procs]
        codes = sorted(p.returncode for p in procs)
        refused = [err for p, (_, err) in zip(procs, results, strict=True) if p.returncode == 2]
        proc = subprocess.CompletedProcess([], f"{codes[0]} and {codes[1]}", "", "".join(e for _, e in results))
        return proc, out, codes == [0, 2] and "in use" in "".join(refused) and manifest_state(out) == "complete"

    b.run("two searches into one --out at once", concurrent)

    def truncated_frontier(base):
        out = base / "out"
        assert pmq([*SEARCH, "--out", str(out)], base).returncode == 0
        text = (out / "frontier.csv").read_text()
        (out / "frontier.csv").write_text(text[: len(text) // 2])
        proc = pmq(["plot", str(out)], base)
        return proc, out, one_line_error(proc, "frontier.csv")

    b.run("pmq plot, truncated frontier.csv", truncated_frontier)

    def corrupt_sweep_point(base):
        space, out = base / "space.yaml", base / "out"
        space.write_text(TINY_SPACE)
        argv = [*SWEEP, "--space", str(space), "--out", str(out)]
        assert pmq(argv, base).returncode == 0
        table = (out / "sweep.csv").read_bytes()
        (out / "points" / "p0000001.json").write_bytes(b'{"point": 1, "desi')
        proc = pmq(argv, base)
        recomputed = json.loads(proc.stdout or "{}").get("computed_designs")
        proc.returncode = f"{proc.returncode} ({recomputed} recomputed)"
        return proc, out, recomputed == 1 and (out / "sweep.csv").read_bytes() == table

    b.run("sweep resume, corrupted point file", corrupt_sweep_point)

    def observer(base):
        outs = [pmq(["evaluate", "--model", "demo", "--bits", "W4A4", "--limit", "1000", "--calibration-images",
                     "32", "--json", *extra], base) for extra in ([], ["--observer", "minmax"])]
        top1 = [json.loads(p.stdout)["top1"] for p in outs]
        proc = outs[1]
        proc.returncode = f"{proc.returncode} (top-1 {100 * top1[0]:.1f} -> {100 * top1[1]:.1f})"
        return proc, None, top1[0] != top1[1]

    b.run("evaluate W4A4 --observer minmax", observer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="only the quick cases (no search, sweep or evaluation)")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="pmq-faults-") as tmp:
        os.environ["PMQ_CACHE_DIR"] = str(Path(tmp) / "sensitivity-cache")  # never the user's cache
        battery = Battery(Path(tmp))
        quick_cases(battery)
        if not args.smoke:
            search_cases(battery)
        for folder in Path(tmp).rglob("read-only"):  # removable again
            folder.chmod(0o755)
    rows = [(r.case, str(r.code), "yes" if r.traceback else "no", r.files, r.verdict) for r in battery.rows]
    header = ("case", "exit code", "traceback", "files left", "verdict")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    failed = sum(r.verdict != "ok" for r in battery.rows)
    print(f"\n{len(rows) - failed}/{len(rows)} cases behave as promised")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
