"""scripts/install.sh picks an interpreter pip may install into (``--python`` prints it, installs nothing)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def chosen(tmp_path: Path, path_dirs: list[str], **env: str) -> str:
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(REPO / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "install.sh"), "--python"], capture_output=True,
                          text=True, check=True, env={**clean, "PATH": os.pathsep.join(path_dirs), **env})
    return proc.stdout.strip()


def test_explicit_python_wins(tmp_path):
    assert chosen(tmp_path, ["/usr/bin", "/bin"], PYTHON="/opt/py/bin/python3") == "/opt/py/bin/python3"


def test_an_active_venv_is_used_as_is(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)
    assert chosen(tmp_path, [str(tmp_path / "env" / "bin"), "/usr/bin", "/bin"]) == "python3"


@pytest.mark.skipif(not glob.glob("/usr/lib/python3*/EXTERNALLY-MANAGED") or not Path("/usr/bin/python3").exists(),
                    reason="needs a PEP 668 (externally managed) system python3 in /usr/bin")
def test_externally_managed_system_python_gets_a_project_venv(tmp_path):
    assert chosen(tmp_path, ["/usr/bin", "/bin"]) == ".venv/bin/python"


def test_a_python_pip_may_install_into_is_used_directly(tmp_path):
    """CI's case (root, packages already in the interpreter): no venv, nothing to download."""
    here = str(Path(sys.executable).parent)
    if os.path.exists(os.path.join(__import__("sysconfig").get_path("stdlib"), "EXTERNALLY-MANAGED")):
        pytest.skip("this interpreter is externally managed")
    assert chosen(tmp_path, [here, "/usr/bin", "/bin"]) == "python3"
