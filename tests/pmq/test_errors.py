"""Library errors speak the library's terms; the CLI maps the parameter at fault to the flag a user typed.

The first test reads the source of every module in ``pmq/`` except the CLI: a string inside a
``raise``, an ``...Error(...)`` call or a warning may not name a command-line flag (``--out``); the
error's ``param`` names the argument instead, and :data:`pmq.cli.FLAGS` turns it into the flag.
The others run the CLI and read the one line a user sees.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from pmq.cli import FLAGS, main
from pmq.errors import PMQError

PMQ = Path(__file__).resolve().parents[2] / "pmq"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _strings(node: ast.AST, constants: dict[str, str]) -> list[str]:
    """String constants (f-string parts included) under ``node``, and the module's string constants it names."""
    found = []
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            found.append(child.value)
        elif isinstance(child, ast.Name) and child.id in constants:
            found.append(constants[child.id])
    return found


def _is_message(node: ast.AST) -> bool:
    """A raise, an exception being built, or a warning."""
    if isinstance(node, ast.Raise):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        name = getattr(func, "id", None) or getattr(func, "attr", None) or ""
        return name.endswith(("Error", "Exception")) or name == "warn"
    return False


def flags_in_messages(source: str) -> list[tuple[int, str]]:
    """(line, flag) for each CLI flag named in an error or warning message of ``source``."""
    tree = ast.parse(source)
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
    found = set()
    for node in ast.walk(tree):
        if _is_message(node):
            for text in _strings(node, constants):
                found.update((node.lineno, flag) for flag in FLAG.findall(text))
    return sorted(found)


def test_the_check_finds_flags_in_messages():
    source = ('HINT = "pass --out DIR"\n'
              'def f(x):\n'
              '    if x:\n'
              '        raise PMQError(f"bad {x}: pass --budgets B")\n'
              '    warnings.warn("use --limit")\n'
              '    error = OutputFolderError(HINT)\n'
              '    raise ValueError("a table rule ---: and a line style -- are no flags")\n'
              '    return "--not-a-message"\n')
    assert flags_in_messages(source) == [(4, "--budgets"), (5, "--limit"), (6, "--out")]


def test_library_messages_name_no_cli_flag():
    offenders = [f"{path.relative_to(PMQ.parent)}:{line}: {flag}"
                 for path in sorted(PMQ.rglob("*.py")) if path.name != "cli.py"
                 for line, flag in flags_in_messages(path.read_text(encoding="utf-8"))]
    assert offenders == [], "name the parameter (PMQError(..., param=...)) and map it in pmq.cli.FLAGS"


def test_every_param_the_library_names_has_a_flag():
    """Each ``param="..."`` in the library maps to what the user typed."""
    params = set()
    for path in PMQ.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "param" and isinstance(node.value, ast.Constant):
                params.add(node.value.value)
    assert params and params <= set(FLAGS), sorted(params - set(FLAGS))


def _error_line(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return lines[0]


def _space(tmp_path: Path, **entries) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"base": "bitfusion", "grid": {"array.rows": [8]}, **entries}))
    return str(path)


@pytest.mark.parametrize(("extra", "space", "expected"), [
    ((), {"objective": "latency"}, "pmq sweep: error: --budgets: no budgets: give some"),
    (("--budgets", "0.5x:W8A8"), {},
     "pmq sweep: error: --objective: no objective: name one (latency or energy)"),
    (("--budgets", "0.5x:W8A8", "--objective", "latency", "--executor", "dask"), {},
     "pmq sweep: error: --scheduler: the dask executor needs the scheduler's address"),
    (("--budgets", "0.5x:W8A8", "--objective", "latency", "--executor", "ray"), {},
     "pmq sweep: error: --executor: unknown executor 'ray': use one of local, dask"),
    (("--budgets", "0.5x:W8A8", "--objective", "latency", "--method", "guess"), {},
     "pmq sweep: error: --method: unknown method 'guess'"),
])
def test_sweep_settings_errors_name_the_flag(capsys, tmp_path, extra, space, expected):
    out = tmp_path / "out"
    line = _error_line(capsys, "sweep", "--model", "demo", "--space", _space(tmp_path, **space),
                       "--out", str(out), *extra)
    assert line.startswith(expected), line
    assert not out.exists()  # refused before any work


def test_missing_space_file_names_the_flag(capsys, tmp_path):
    line = _error_line(capsys, "sweep", "--model", "demo", "--space", str(tmp_path / "none.yaml"),
                       "--out", str(tmp_path / "out"))
    assert line == (f"pmq sweep: error: --space: space file {tmp_path / 'none.yaml'} not found: "
                    "name a YAML file (its format: `pydoc pmq.sweep`)")


def test_search_second_objective_names_also(capsys, tmp_path):
    line = _error_line(capsys, "search", "--model", "demo", "--objective", "bops", "--also", "speed",
                       "--budget", "0.5x:W8A8", "--out", str(tmp_path / "out"))
    assert line.startswith("pmq search: error: --also: unknown objective 'speed'"), line
    assert not (tmp_path / "out").exists()


def test_simulate_topology_errors_name_the_flag(capsys, tmp_path):
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer,M,N,K,\nfc1,8,8,8,\n")
    line = _error_line(capsys, "simulate", "--workload", str(topo), "--accelerator", "bitfusion",
                       "--allocation", str(tmp_path / "a.json"))
    assert line.startswith("pmq simulate: error: --allocation: an allocation file needs a model"), line
    line = _error_line(capsys, "simulate", "--workload", str(topo), "--accelerator", "bitfusion",
                       "--bits", "float")
    assert line.startswith("pmq simulate: error: --bits: a topology CSV needs integer bits"), line


def test_model_errors_name_the_flag(capsys, tmp_path):
    line = _error_line(capsys, "simulate", "--model", "no_such_package_xyz.models:build", "--accelerator",
                       "bitfusion")
    assert line.startswith("pmq simulate: error: --model: model no_such_package_xyz.models:build: "
                           "cannot import"), line
    line = _error_line(capsys, "evaluate", "--model", "demo", "--checkpoint", str(tmp_path / "none.pt"))
    assert line.startswith(f"pmq evaluate: error: --checkpoint: checkpoint {tmp_path / 'none.pt'} "
                           "not found"), line


def test_plot_names_the_run_folder_argument(capsys, tmp_path):
    line = _error_line(capsys, "plot", str(tmp_path / "nothing"))
    assert line == (f"pmq plot: error: RUN_DIR: results folder {tmp_path / 'nothing'} not found: "
                    "run the demo into it first")


def test_param_is_kept_on_the_error():
    from pmq.sweep import SweepSettings, space_from_dict

    space = space_from_dict({"base": "bitfusion"}, "s.yaml")
    with pytest.raises(PMQError) as exc:
        SweepSettings("latency", ("0.5x:W8A8",), "dask").checked(space, [])
    assert exc.value.param == "scheduler" and "--" not in str(exc.value)
