"""The GPU check can run on a bare GPU machine: what it imports, how it stops without a GPU,
and how it reports the throughput targets (the check itself runs only where CUDA is)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from adaptflow.bench import gpu_check
from tests.helpers import ROOT

CHECK = ROOT / "adaptflow" / "bench" / "gpu_check.py"
# what a GPU machine's Python is assumed to have (pillow comes with torchvision)
ON_THE_MACHINE = {"torch", "torchvision", "numpy", "scikit-learn", "pillow"}
# every module the check imports up front: the tests, the stages' libraries, the benchmark
CHECK_IMPORTS = """
import json, sys
import tests.cuda.test_training, tests.cuda.test_export
import adaptflow.training.engine, adaptflow.adapt.one_method, adaptflow.source_model.pretrain
import adaptflow.export.onnx
import adaptflow.bench.__main__, adaptflow.bench.throughput
from adaptflow.methods.base import all_methods
all_methods()
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""


def distribution(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def bundled() -> set[str]:
    lines = (ROOT / "adaptflow" / "bench" / "gpu_requirements.txt").read_text().splitlines()
    return {distribution(line) for line in lines if line.strip() and not line.startswith("#")}


def test_the_gpu_check_imports_no_dependency_the_machine_and_the_bundle_lack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing = {distribution(r) for r in project["dependencies"]} - ON_THE_MACHINE - bundled()
    assert {"dvc", "prefect", "great-expectations", "pandas"} <= missing
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    imported = json.loads(result.stdout.splitlines()[-1])
    owners = packages_distributions()
    leaked = {
        module: dist
        for module in imported
        for dist in (distribution(d) for d in owners.get(module, []))
        if dist in missing
    }
    assert not leaked, f"the GPU check would import packages a GPU machine lacks: {leaked}"


def run_check(*arguments: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), "--results", str(tmp_path / "results"), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},  # no GPU, wherever this runs
    )


def test_without_a_cuda_device_the_check_stops_with_one_line_before_installing(tmp_path):
    result = run_check("--bundle", str(tmp_path / "no-bundle"), tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adaptflow error: no CUDA device: torch ")
    assert not (tmp_path / "results").exists()


def test_a_missing_bundle_is_named_with_how_to_build_it(tmp_path):
    result = run_check("--install-only", "--bundle", str(tmp_path / "none"), tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"adaptflow error: {tmp_path / 'none'}: missing; build it with `make gpu-bundle` "
        "where pip reaches an index"
    )


def test_a_cpu_dry_run_leaves_the_summary_and_each_throughput_row_in_the_results(tmp_path):
    """What a lent machine sends back is the results folder: the rows for results/throughput/
    must be in it, not in the check's scratch folder, which is deleted."""
    dry_run = ["--device", "cpu", "--no-install", "--skip-tests"]
    result = run_check(
        *dry_run, "--bench-args", "--steps 2 --warmup 1 --repeats 1", tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    results = tmp_path / "results"
    summary = json.loads((results / "summary.json").read_text())
    for method in ("source_only", "dann"):
        row = json.loads((results / f"throughput-{method}.json").read_text())
        assert row["method"] == method and row["device_type"] == "cpu"
        assert row in summary["throughput"]
    assert all(target["met"] is None for target in summary["targets"])


def test_targets_are_judged_only_at_the_settings_they_were_set_for():
    check = gpu_check
    throughput = [
        {"method": "source_only", "engine_images_per_second": 5100.0, "ratio": 0.95},
        {"method": "dann", "engine_images_per_second": 4000.0, "ratio": 0.85},
    ]
    met = [row["met"] for row in check.target_rows(throughput, check.GPU_SETTINGS)]
    assert met == [True, False, True, False]
    small = check.target_rows(throughput, "--backbone small_cnn --batch 8")
    assert [row["met"] for row in small] == [None] * 4
    cases = [
        {"name": "test_a", "outcome": "passed", "seconds": 1.0, "message": ""},
        {"name": "test_b", "outcome": "skipped", "seconds": 0.0, "message": "no onnx"},
    ]
    epoch = {"epoch": 1, "images_per_second": 10.0, "peak_memory_mb": 5.0}
    summary = {
        "environment": {"device": "GPU X", "torch": "2", "cuda": "13", "python": "3", "date": "d"},
        "exit_code": 0,
        "bench_settings": check.GPU_SETTINGS,
        "tests": {"passed": 1, "failed": 0, "skipped": 1, "errors": 0, "cases": cases},
        "test_figures": [{"test": "test_a", "epochs": [epoch]}],
        "throughput": throughput,
        "targets": check.target_rows(throughput, check.GPU_SETTINGS),
    }
    text = check.markdown(summary)
    assert "# GPU check: GPU X" in text and "1 passed, 0 failed, 1 skipped" in text
    assert "| test_b | skipped | 0 | no onnx |" in text
    assert "| DANN img/s | 4400 | 4000 | NOT met |" in text
