"""adaptflow/ is layered: each package imports only the layers below it, the graph of packages
has no cycle and stays shallow. The layers are pyproject.toml's import-linter contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import networkx as nx

from tests.helpers import ROOT

MAX_DEPTH = 10  # packages (and top-level modules) on the longest chain of imports


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """import-linter's own command, on the package found in `cwd`."""
    command = [str(Path(sys.executable).parent / "lint-imports"), "--config", "pyproject.toml"]
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def package_graph() -> nx.DiGraph:
    """adaptflow's subpackages and top-level modules, an edge where one imports the other."""
    modules = grimp.build_graph("adaptflow")
    graph = nx.DiGraph()
    for module in modules.modules:
        node = module.split(".")[1] if "." in module else None
        if node is None:
            continue
        graph.add_node(node)
        for imported in modules.find_modules_directly_imported_by(module):
            other = imported.split(".")[1] if "." in imported else None
            if other is not None and other != node:
                graph.add_edge(node, other)
    return graph


def test_every_package_imports_only_the_layers_below_it():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_an_import_from_a_lower_layer_to_a_higher_one_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "adaptflow", tmp_path / "adaptflow")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    errors = tmp_path / "adaptflow" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom adaptflow.training import engine  # upward\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "adaptflow.core.errors -> adaptflow.training.engine" in result.stdout


def test_the_package_graph_has_no_cycle_and_at_most_ten_layers():
    graph = package_graph()
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = {
        name.strip() for layer in contract["contracts"][0]["layers"] for name in layer.split("|")
    }
    assert set(graph) - {"__main__"} == layered, "a package missing from the layer contract"
    assert nx.is_directed_acyclic_graph(graph), nx.find_cycle(graph)
    longest = nx.dag_longest_path(graph)
    assert len(longest) <= MAX_DEPTH, " -> ".join(longest)


def test_every_package_says_its_job_and_what_it_may_import():
    for init in sorted((ROOT / "adaptflow").glob("*/__init__.py")):
        doc = init.read_text().split('"""')[1]
        assert "Imports:" in doc, f"{init}: its docstring names what the package may import"
