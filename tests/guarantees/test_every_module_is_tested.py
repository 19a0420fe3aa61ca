"""Every module of adaptflow/ is reached by a test written for it: imported by a test file, or
started by one as a command (`python -m <module>`, `adaptflow bench <name>`)."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

BENCH = "adaptflow.bench"


def library_modules() -> set[str]:
    """Every module of adaptflow/, by dotted name (package docstrings aside)."""
    files = (ROOT / "adaptflow").rglob("*.py")
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in files
        if path.name != "__init__.py"
    }


def started(words: list[str]) -> set[str]:
    """Modules a command line of string constants starts: `-m adaptflow.bench rank`, `-m
    adaptflow`, or the `adaptflow bench <name>` command."""
    modules = set()
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        if word == "-m" and following and following.startswith("adaptflow"):
            modules.add(following if following != "adaptflow" else "adaptflow.__main__")
            modules.add(f"{following}.__main__")
        if word in (BENCH, "bench") and following:
            modules.add(f"{BENCH}.{following.replace('-', '_')}")
    return modules


def reached_by(test_file: str) -> set[str]:
    """The adaptflow modules a test file imports or starts."""
    reached = set()
    for node in ast.walk(ast.parse(test_file)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adaptflow"):
            reached |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            reached |= {alias.name for alias in node.names if alias.name.startswith("adaptflow")}
        elif isinstance(node, ast.List | ast.Tuple):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            reached |= started([w for w in words if isinstance(w, str)])
    return reached


def test_every_module_is_imported_or_started_by_some_test():
    reached = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if "helpers" not in path.relative_to(ROOT / "tests").parts:  # a test, not a helper
            reached |= reached_by(path.read_text())
    untested = sorted(library_modules() - reached)
    assert not untested, f"modules no test imports or starts: {untested}"


def test_a_module_only_a_helper_imports_counts_as_untested():
    source = "from adaptflow.core.io import write_json\nrun(['-m', 'adaptflow.bench', 'demo-run'])"
    assert reached_by(source) >= {"adaptflow.core.io", "adaptflow.bench.demo_run"}
    assert "adaptflow.core.live" not in reached_by(source)
