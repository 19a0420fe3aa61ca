"""Guards on how the code runs things and loads things."""

from __future__ import annotations

import ast
import re

import pytest

from tests.helpers import ROOT

SOURCES = [
    p for d in ("adaptflow", "stages", "flows", "bench", "tests") for p in (ROOT / d).rglob("*.py")
]


def occurrences(pattern: str) -> list[str]:
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def _torch_load_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to the torch module and names bound to torch.load itself, anywhere in a file
    (`import torch as t`, `from torch import load as read`, `read = torch.load`)."""
    modules, loads = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
            loads |= {a.asname or a.name for a in node.names if a.name == "load"}
    for node in ast.walk(tree):  # aliases by assignment, once the module names are known
        if isinstance(node, ast.Assign) and _is_torch_load(node.value, modules, loads):
            loads |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return modules, loads


def _is_torch_load(node: ast.AST, modules: set[str], loads: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in loads
    if isinstance(node, ast.Attribute) and node.attr == "load":
        owner = node.value
        if isinstance(owner, ast.Attribute) and owner.attr == "serialization":
            owner = owner.value  # torch.serialization.load
        return isinstance(owner, ast.Name) and owner.id in modules
    return False


def unsafe_torch_loads(source: str, name: str = "<source>") -> list[str]:
    """Every use of torch.load that is not a call with a literal `weights_only=True`: calls
    without it (on one line or several), through an alias, or torch.load passed as a value."""
    tree = ast.parse(source)
    modules, loads = _torch_load_names(tree)
    safe = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_torch_load(node.func, modules, loads):
            weights_only = [k.value for k in node.keywords if k.arg == "weights_only"]
            if weights_only and isinstance(weights_only[0], ast.Constant):
                if weights_only[0].value is True:
                    safe.add(id(node.func))
    return [
        f"{name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if _is_torch_load(node, modules, loads)
        and id(node) not in safe
        and not isinstance(getattr(node, "ctx", None), ast.Store)
    ]


def test_no_shell_commands_built_from_strings():
    assert occurrences(r"shell\s*=\s*True|os\.system\(|os\.popen\(") == []


def test_every_torch_load_is_weights_only():
    unsafe = [
        found
        for path in SOURCES
        for found in unsafe_torch_loads(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert unsafe == []
    assert any("torch.load(" in path.read_text() for path in SOURCES)  # the check saw some


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.load(path)",
        "import torch\ntorch.load(\n    path,\n    map_location='cpu',\n)",
        "import torch\ntorch.load(path, weights_only=False)",
        "import torch\ntorch.load(path, **options)",
        "import torch as t\nt.load(path)",
        "from torch import load\nload(path)",
        "from torch import load as read\nread(path, map_location='cpu')",
        "import torch\nread = torch.load\nread(path)",
        "import torch\ntorch.serialization.load(path)",
        "import functools, torch\nloader = functools.partial(torch.load, map_location='cpu')",
    ],
)
def test_the_torch_load_check_catches_aliased_and_multi_line_calls(source):
    assert unsafe_torch_loads(source) != []


def test_the_torch_load_check_accepts_weights_only_calls():
    source = "import torch as t\nt.load(\n    path,\n    weights_only=True,\n)\n"
    assert unsafe_torch_loads(source) == []


def test_the_documented_prefect_server_listens_on_loopback_only():
    documents = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    starts = [
        line
        for path in documents
        for line in path.read_text().splitlines()
        if "prefect server start" in line
    ]
    assert starts and all("--host 127.0.0.1" in line for line in starts)
    running = (ROOT / "docs" / "running.md").read_text()
    assert "make prefect-server" in running and "listens on 127.0.0.1 only" in running
