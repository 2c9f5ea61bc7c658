"""Run folders under faults: unusable --out, concurrent runs, SIGKILL while writing, bad bytes.

Every user-facing case ends in one stderr line and exit code 2 before any work, and a folder is
either a complete set (its manifest checks out) or visibly incomplete; never a mix of two runs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from pmq.cli import main
from pmq.errors import PMQError
from pmq.io import write_json, write_text
from pmq.runs import LOCK_FILE, RUN_FILE, OutputFolderError, RunFolder, check_output_folder, read_run

REPO = Path(__file__).resolve().parents[2]
SIMULATE = ["simulate", "--model", "demo", "--accelerator", "bitfusion", "--json"]


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: chmod 555 for a normal user; root ignores modes, so for
    root a folder of sysfs (read-only to everyone) stands in."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder
    (folder / "probe").unlink()
    return Path("/sys/kernel")


def one_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_python(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


# --- --out that cannot be used: refused before any work --------------------------------------------

@pytest.mark.parametrize("command", [
    SIMULATE,
    ["search", "--model", "demo", "--objective", "bops", "--budget", "0.5x:W8A8"],
    ["sweep", "--model", "demo", "--space", str(REPO / "examples" / "sweep_space.yaml")],
    ["demo"],
])
def test_out_that_is_a_file_is_refused_before_any_work(capsys, tmp_path, command):
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    line = one_line(capsys, main([*command, "--out", str(target)]), "--out", "is an existing file")
    assert str(target) in line
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("command", [
    SIMULATE,
    ["search", "--model", "demo", "--objective", "bops", "--budget", "0.5x:W8A8"],
    ["sweep", "--model", "demo", "--space", str(REPO / "examples" / "sweep_space.yaml")],
    ["demo"],
])
@pytest.mark.parametrize("inside", [False, True])
def test_read_only_out_is_refused_before_any_work(capsys, tmp_path, command, inside):
    folder = read_only_folder(tmp_path)
    out = folder / "new" if inside else folder
    one_line(capsys, main([*command, "--out", str(out)]), "--out", "not writable")
    assert not (folder / "new").exists()


def test_failed_run_leaves_no_folder_it_created(capsys, tmp_path):
    out = tmp_path / "a" / "b"
    one_line(capsys, main(["search", "--model", "demo", "--objective", "bops", "--budget", "0.01x:W8A8",
                           "--calibration-images", "16", "--out", str(out)]), "below the cheapest")
    assert not (tmp_path / "a").exists()


# --- concurrent runs ----------------------------------------------------------------------------

def test_second_run_into_a_locked_folder_is_refused(capsys, tmp_path):
    out = tmp_path / "out"
    holder = RunFolder(out, "search")
    holder.claim()  # another run holds the folder (flock: per open file, so this process counts)
    try:
        one_line(capsys, main([*SIMULATE, "--out", str(out)]), "--out", "in use by another pmq run")
        assert not (out / RUN_FILE).exists()
    finally:
        holder.release()
    assert main([*SIMULATE, "--out", str(out)]) == 0  # released: the folder is usable again
    assert not (out / LOCK_FILE).exists()


@pytest.mark.slow  # fresh interpreters killed or raced on purpose
def test_concurrent_processes_one_wins_one_is_refused(tmp_path):
    out = tmp_path / "out"
    code = ("import sys, time; from pmq.runs import RunFolder; f = RunFolder(sys.argv[1], 'sweep'); f.claim(); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run([sys.executable, "-m", "pmq", *SIMULATE, "--out", str(out)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "in use" in proc.stderr
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
        proc = subprocess.run([sys.executable, "-m", "pmq", *SIMULATE, "--out", str(out)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
    finally:
        holder.kill()
        holder.wait()


# --- SIGKILL while writing --------------------------------------------------------------------

def killed_run(argv: list[str], module: str, attr: str, after: int = 1) -> subprocess.CompletedProcess:
    """The CLI in a fresh process that SIGKILLs itself right after the ``after``-th call of
    ``module.attr`` (real fault injection, shared with benchmarks/faults.py)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from faults import killed

    return killed(argv, REPO, module, attr, after)


@pytest.mark.slow  # fresh interpreters killed or raced on purpose
def test_sigkill_while_staging_keeps_the_old_set_and_next_run_sweeps_leftovers(tmp_path):
    out = tmp_path / "out"
    assert main([*SIMULATE, "--bits", "W8A8", "--out", str(out)]) == 0
    before = read_run(out)
    proc = killed_run([*SIMULATE, "--bits", "W4A4", "--out", str(out)], "hwsim.files", "atomic_write")
    assert proc.returncode == -9
    assert list(out.glob(".pmq-staging-*"))  # what the killed run left
    kept = read_run(out)  # the old set is intact and still checks out
    assert kept.summary == before.summary
    assert main([*SIMULATE, "--bits", "W4A4", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["per_op.csv", "run.json"]


@pytest.mark.slow  # fresh interpreters killed or raced on purpose
def test_sigkill_while_publishing_leaves_a_visibly_incomplete_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*SIMULATE, "--bits", "W8A8", "--out", str(out)]) == 0
    capsys.readouterr()
    proc = killed_run([*SIMULATE, "--bits", "W4A4", "--out", str(out)], "os", "replace", after=2)
    assert proc.returncode == -9  # died after moving per_op.csv in, before writing run.json
    with pytest.raises(PMQError, match="no run.json"):
        read_run(out)
    assert main(["plot", str(out)]) == 2
    capsys.readouterr()


def test_altered_file_is_refused_by_readers(tmp_path):
    out = tmp_path / "out"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    per_op = out / "per_op.csv"
    per_op.write_text(per_op.read_text()[:-200])  # truncated, as by a full disk or a copy cut short
    with pytest.raises(PMQError, match="differs from what run.json recorded"):
        read_run(out)


# --- library behaviour ----------------------------------------------------------------------

def test_check_output_folder_names_the_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="existing file") as exc:
        check_output_folder(tmp_path / "file")
    assert exc.value.param == "out_dir"
    with pytest.raises(OutputFolderError, match="cannot be created"):
        check_output_folder(tmp_path / "file" / "sub")
    assert check_output_folder(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert not (tmp_path / "new").exists()


def test_written_files_follow_the_umask_and_json_is_standard(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.umask(old) == old  # importing pmq.io changed nothing process-wide
    with pytest.raises(ValueError):
        write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists() and not list(tmp_path.glob(".*.tmp"))


# --- caches, checkpoints, pretrained weights ------------------------------------------------------

def test_test_suite_never_uses_the_real_cache():
    cache = Path(os.environ["PMQ_CACHE_DIR"])
    assert Path.home() not in cache.parents


def test_unwritable_sensitivity_cache_is_a_warning_not_a_failure(tmp_path, tiny_vit):
    from pmq.sensitivity import compute_sensitivity
    from pmq.sensitivity.cache import CacheWarning

    cache = read_only_folder(tmp_path) / "pmq-cache"
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute_sensitivity(tiny_vit, images, labels, bits=(4, 8), cache_dir=cache, progress=False)
    assert set(result.weights["blocks.0.mlp.fc1"]) == {4, 8} and result.weights["blocks.0.mlp.fc1"][4] > 0
    assert [w.category for w in caught] == [CacheWarning]
    assert "PMQ_CACHE_DIR" in str(caught[0].message)


def test_random_bytes_checkpoint_is_one_line(capsys, tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(bytes(range(256)) * 20)
    line = one_line(capsys, main(["evaluate", "--model", "demo", "--checkpoint", str(checkpoint)]),
                    "--checkpoint", "not a PyTorch checkpoint")
    assert "weights_only" not in line


@pytest.mark.slow  # fresh interpreters killed or raced on purpose
def test_pretrained_offline_fails_fast_naming_the_cache(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pmq", "evaluate", "--model", "deit_tiny_patch16_224",
                           "--pretrained", "--data", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
                               "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert str(tmp_path / "hub") in proc.stderr and "--pretrained" in proc.stderr


# --- bad bytes in user files ------------------------------------------------------------------

@pytest.mark.parametrize("case", ["accelerator", "space", "workload"])
def test_non_utf8_user_files_are_one_line(capsys, tmp_path, case):
    bad = tmp_path / {"accelerator": "acc.yaml", "space": "space.yaml", "workload": "topo.csv"}[case]
    bad.write_bytes(b"kind: bitfusion\nname: \xff\xfe\n" if case != "workload" else b"Layer,M,N,K,\nfc\xff,1,2,3,\n")
    argv = {"accelerator": ["simulate", "--model", "demo", "--accelerator", str(bad)],
            "space": ["sweep", "--model", "demo", "--space", str(bad), "--out", str(tmp_path / "o")],
            "workload": ["simulate", "--workload", str(bad), "--accelerator", "bitfusion"]}[case]
    one_line(capsys, main(argv), bad.name, "UTF-8")


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(clock_hz=float("inf")), "clock_hz must be a finite number"),
    (lambda d: d["array"].update(rows=10**6), "array.rows must be <= 4096"),
    (lambda d: d["dram"].update(energy_pj_per_bit=1e300), "dram.energy_pj_per_bit must be <= 1e+15"),
])
def test_accelerator_numbers_are_bounded(capsys, tmp_path, edit, needle):
    import yaml

    import accelerators

    data = yaml.safe_load((accelerators.PRESET_DIR / "bitfusion.yaml").read_text())
    edit(data)
    path = tmp_path / "acc.yaml"
    path.write_text(yaml.safe_dump(data))
    one_line(capsys, main(["simulate", "--model", "demo", "--accelerator", str(path)]), needle)


# --- simulate writes only when asked ---------------------------------------------------------------

def test_simulate_without_out_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--model", "demo", "--accelerator", "bitfusion"]) == 0
    assert "not written: pass --out DIR" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_python_dash_m_pmq():
    proc = subprocess.run([sys.executable, "-m", "pmq", "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "usage: pmq" in proc.stdout


def test_search_folder_is_one_set_and_plots(capsys, tmp_path):
    out = tmp_path / "search"
    (out / ".frontier.csv.1234abcd.tmp").parent.mkdir()
    (out / ".frontier.csv.1234abcd.tmp").write_bytes(b"x" * 1000)  # left by a killed run
    assert main(["search", "--model", "demo", "--objective", "bops", "--budget", "0.4x:W8A8", "--bit-choices",
                 "4,8", "--calibration-images", "16", "--limit", "32", "--out", str(out), "--json"]) == 0
    run = read_run(out)
    assert sorted(p.name for p in out.iterdir()) == ["allocation.json", "frontier.csv", "run.json"]
    frontier = run.summary.frontier
    rows = (out / "frontier.csv").read_text().splitlines()
    assert len(rows) == frontier.points + 1 and rows[0].split(",")[:2] == ["omega", "bops"]
    assert set(rows[1].split(",")[2:]) <= {"W4A4", "W4A8", "W8A4", "W8A8"}  # a bits table, one row per point
    capsys.readouterr()
    assert main(["plot", str(out), "--format", "png"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "figures" / "frontier.png")
    assert json.loads((out / RUN_FILE).read_text())["kind"] == "search"
