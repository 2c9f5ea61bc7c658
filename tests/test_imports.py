"""The dependency graph of pmq, hwsim and accelerators, read from the source (every import statement,
also inside functions; ``if TYPE_CHECKING:`` blocks are not run, so they are not edges).

Importing ``a.b.c`` runs ``a/b/__init__.py`` too, so an import is also an edge to each package on
the way that the importer is not itself inside. The layers (README, "Architecture"): hwsim ← accelerators
← pmq; in pmq the quantizers and the method never reach plotting, not even on use, and importing
results, plots or the allocation format never loads torch (only ``pmq.io.provenance``, which records
the torch version, imports it on use).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pmq", "hwsim", "accelerators")
KNOWN_CYCLES: list[set[str]] = []  # none: a cycle that must stay is listed here with its reason


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """Every module named by an import statement of ``name`` (absolute, as written), and whether the
    statement is inside a function (run on use, not on import)."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, on_use: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, on_use)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, on_use) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{path}:{child.lineno}: use absolute imports"
                found.append((child.module or "", on_use))
                found.extend((f"{child.module}.{alias.name}", on_use) for alias in child.names)
            visit(child, on_use or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name, external=set(), on_import=set())
        inside = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for target, on_use in _imports(name, path):
            top = target.split(".")[0]
            if top not in PACKAGES:
                graph.nodes[name]["external"].add(top)
                if not on_use:
                    graph.nodes[name]["on_import"].add(top)
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # the module and every package on the way to it
                step = ".".join(parts[:i])
                if step in MODULES and step not in inside and step != name:
                    on_import = not on_use or graph.get_edge_data(name, step, {}).get("on_import", False)
                    graph.add_edge(name, step, on_import=on_import)
    return graph


GRAPH = _graph()


def _reaches(module: str, on_use: bool = True) -> tuple[set[str], set[str]]:
    """The pmq/hwsim/accelerators modules and the third-party packages ``module`` may import, on use
    too or (``on_use=False``) when it is imported."""
    graph = GRAPH if on_use else GRAPH.edge_subgraph([e for e, on in nx.get_edge_attributes(GRAPH, "on_import").items()
                                                     if on]).copy()
    graph.add_nodes_from(GRAPH.nodes(data=True))
    inner = nx.descendants(graph, module) | {module}
    return inner, set().union(*(GRAPH.nodes[m]["external" if on_use else "on_import"] for m in inner))


def test_no_import_cycles():
    cycles = [set(c) for c in nx.strongly_connected_components(GRAPH) if len(c) > 1]
    for cycle in cycles:
        example = next(nx.simple_cycles(GRAPH.subgraph(cycle)))
        assert cycle in KNOWN_CYCLES, f"import cycle: {' -> '.join([*example, example[0]])}"
    for known in KNOWN_CYCLES:
        assert known in cycles, f"the cycle {sorted(known)} is gone: delete it from KNOWN_CYCLES"


def test_hwsim_and_accelerators_stand_alone():
    for name in MODULES:
        if name.split(".")[0] in ("hwsim", "accelerators"):
            inner, external = _reaches(name)
            assert not {m for m in inner if m.startswith("pmq")}, f"{name} imports pmq"
            assert "torch" not in external and "matplotlib" not in external, f"{name}: {sorted(external)}"
            if name.startswith("hwsim"):
                assert not {m for m in inner if m.startswith("accelerators")}, f"{name} imports accelerators"


@pytest.mark.parametrize("layer", ["pmq.quant", "pmq.sensitivity", "pmq.patchwise", "pmq.search", "pmq.pareto",
                                   "pmq.trace", "pmq.sweep"])
def test_the_method_never_draws(layer):
    for name in (m for m in MODULES if m == layer or m.startswith(layer + ".")):
        inner, external = _reaches(name)
        assert "matplotlib" not in external, f"{name} may import matplotlib"
        assert not {m for m in inner if m.startswith("pmq.plots")}, f"{name} may import pmq.plots"


@pytest.mark.parametrize("module", ["pmq.allocation", "pmq.budget", "pmq.pareto", "pmq.methods", "pmq.results",
                                    "pmq.plots", "pmq.patchwise.spec", "pmq.registry", "pmq.defaults"])
def test_formats_and_figures_never_need_torch(module):
    inner, external = _reaches(module, on_use=False)
    assert "torch" not in external and "timm" not in external, f"importing {module} imports torch"
    inner, _ = _reaches(module)
    assert not {m for m in inner if m.startswith(("pmq.quant", "pmq.sensitivity", "pmq.experiment"))}


def test_validating_an_allocation_loads_nothing_heavy():
    code = ("import sys; from pmq.allocation import BitAllocation; "
            "BitAllocation.uniform('W8A8', ['a', 'b']).validate(['a', 'b']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pmq', 'hwsim', 'matplotlib')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
    assert eval(loaded) == ["pmq", "pmq.allocation", "pmq.errors", "pmq.io", "pmq.patchwise", "pmq.patchwise.spec"]
