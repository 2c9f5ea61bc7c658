"""Every script in benchmarks/ keeps running: the convention is that each accepts ``--smoke`` (its
smallest setting, seconds to a few minutes, writing only under the working folder) and ``--help``.
New benchmarks are picked up by file name, so an import break or a renamed API cannot land."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# drivers that benchmarks/fidelity.py runs under a peer simulator's own interpreter (Python 2.7 for
# BitFusion's, SCALE-Sim's venv): not benchmarks of their own
PEER_DRIVERS = ("bitfusion_worker.py", "scalesim_worker.py")
BENCHMARKS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py")
                    if not p.name.startswith("_") and p.name not in PEER_DRIVERS)


def run(script: str, flag: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), flag], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_every_benchmark_imports_and_offers_smoke(tmp_path):
    """Fast tier: one interpreter imports every script (``__main__`` guards keep them from running)."""
    code = ("import importlib.util, sys\n"
            f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
            "for path in sys.argv[1:]:\n"
            "    spec = importlib.util.spec_from_file_location('bench_' + path.rsplit('/', 1)[-1][:-3], path)\n"
            "    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
            "    spec.loader.exec_module(module)\n")
    paths = [str(REPO / "benchmarks" / script) for script in BENCHMARKS]
    proc = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lacking = [s for s in BENCHMARKS if '"--smoke"' not in (REPO / "benchmarks" / s).read_text()]
    assert not lacking, f"benchmarks without --smoke: {lacking}"


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_smallest_setting_runs(script, tmp_path):
    proc = run(script, "--smoke", tmp_path, 1800)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
