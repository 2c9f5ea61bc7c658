"""The notebooks in notebooks/ run top to bottom (small settings) and are stored without outputs."""

from __future__ import annotations

import base64
import os
import re
import struct
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pmq.plots import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 900  # generous: a loaded 2-core machine runs the paper-figures notebook in minutes
LAST_OUTPUT = {  # what each notebook's last cell shows: figure size in inches, or the report's first line
    "01_quickstart": (SINGLE_COLUMN_IN, 2.2),
    "02_hardware_codesign": (DOUBLE_COLUMN_IN, 3.4),
    "03_paper_figures": r"# PMQ results: `pmq-demo-vit@[0-9a-f]+`\n",
}


def test_there_are_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    # the kernel inherits the environment: this checkout's packages (whichever copy is installed), no user cache
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PMQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # a failing cell raises CellExecutionError with the cell's traceback
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    (last,) = [o for o in code[-1].outputs if o.output_type == "execute_result"]
    expected = LAST_OUTPUT[path.stem]
    if isinstance(expected, tuple):  # a figure: PNG of the column width × height at png_bytes' 150 dpi
        png = base64.b64decode(last.data["image/png"])
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == pytest.approx(tuple(150 * inches for inches in expected), abs=1)
    else:  # the demo's report, rendered
        assert re.match(expected, last.data["text/markdown"]), last.data["text/markdown"][:200]
