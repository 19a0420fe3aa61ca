"""dvc.yaml is exact: each stage declares the code it imports, and the paths the library writes."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
from dvc.repo import Repo

from adaptflow.core import paths
from adaptflow.data.cache import CACHE_FILES
from tests.helpers import ROOT
from tests.helpers.stages import load_stage


@pytest.fixture(scope="module")
def stages():
    with Repo(str(ROOT)) as repo:
        return {
            s.addressing: (
                {d.def_path for d in s.deps},
                {o.def_path for o in s.outs},
                s.cmd,
            )
            for s in repo.index.stages
        }


def _library_modules() -> dict:
    return {n: m for n, m in sys.modules.items() if n == "adaptflow" or n.startswith("adaptflow.")}


def script_of(stage: str) -> str:
    """The script a stage runs: `adapt_member@shot` (a foreach stage) runs adapt_member.py."""
    return stage.split("@")[0]


def deferred_imports(script: str) -> list[str]:
    """Modules a stage script imports inside its functions (the path that needs torch, say)."""
    tree = ast.parse((ROOT / "stages" / f"{script}.py").read_text())
    top_level = set(tree.body)
    return [
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and node not in top_level
        for alias in node.names
    ]


def imported_library_files(stage: str) -> set[str]:
    """adaptflow files a stage script imports, at its top or inside its functions, measured
    with a fresh copy of the package."""
    original = _library_modules()
    for name in original:
        del sys.modules[name]
    try:
        load_stage(script_of(stage))
        for module in deferred_imports(script_of(stage)):
            importlib.import_module(module)
        if script_of(stage) in ("adapt", "adapt_member"):  # methods are found at run time:
            importlib.import_module("adaptflow.methods.base").all_methods()
        files = [getattr(m, "__file__", None) for m in _library_modules().values()]
    finally:  # put the original modules back: other tests hold their classes
        for name in _library_modules():
            del sys.modules[name]
        sys.modules.update(original)
    return {Path(f).resolve().relative_to(ROOT).as_posix() for f in files if f}


def test_every_stage_runs_its_own_script(stages):
    for name, (deps, _, cmd) in stages.items():
        script, _, item = name.partition("@")
        assert cmd == f"python stages/{script}.py" + (f" {item}" if item else "")
        assert f"stages/{script}.py" in deps


def test_code_deps_are_exactly_the_imported_library_files(stages):
    for name, (deps, _, _) in stages.items():
        declared = {d for d in deps if d.startswith("adaptflow")}
        imported = imported_library_files(name)
        covered = {f for f in imported if any(f == d or f.startswith(d + "/") for d in declared)}
        assert covered == imported, f"{name} imports undeclared {sorted(imported - covered)}"
        unused = {d for d in declared if not any(f == d or f.startswith(d + "/") for f in imported)}
        assert not unused, f"{name} declares {sorted(unused)} but never imports them"


def test_outputs_are_where_the_library_writes_them(stages):
    outs = {o for _, stage_outs, _ in stages.values() for o in stage_outs}
    expected = {
        paths.MANIFEST,
        paths.SOURCE_MODEL,
        paths.ADAPTED_MODEL,
        paths.SELECTION,
        paths.ONNX_MODEL,
        paths.RANK_CHOICE,
        *CACHE_FILES.values(),
    }
    expected |= {
        paths.metrics_file(s)
        for s in ("validate", "rank", "pretrain", "adapt", "evaluate", "export")
    }
    expected |= {paths.plots_dir(s) for s in ("pretrain", "adapt", "evaluate")}
    assert {p.as_posix() for p in expected} <= outs


def test_only_evaluate_and_export_read_target_test_labels(stages):
    readers = {
        name for name, (deps, _, _) in stages.items() if paths.TARGET_TEST.as_posix() in deps
    }
    assert readers == {"evaluate", "export"}


def test_pretrain_follows_the_rank_stage_choice_only(stages):
    pretrain_deps = stages["pretrain"][0]
    assert paths.RANK_CHOICE.as_posix() in pretrain_deps  # `pretrain.backbone: auto` reads it
    assert "metrics/rank.json" not in pretrain_deps  # scores may change, the choice not
