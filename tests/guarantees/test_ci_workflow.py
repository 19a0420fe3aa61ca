"""The CI workflow a team adopts: valid for GitHub Actions, and every command it runs exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def schema_check(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with its vendored GitHub workflow schema (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(path)],
        capture_output=True,
        text=True,
    )


def make_targets() -> set[str]:
    """The targets `make help` lists (every target with a `## ` description)."""
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"^  make (\S+)", result.stdout, re.MULTILINE))


def test_the_workflow_passes_the_github_workflow_schema():
    result = schema_check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = yaml.safe_load(WORKFLOW.read_text())
    broken["jobs"]["test"]["step"] = broken["jobs"]["test"].pop("steps")  # a typo'd key
    path = tmp_path / "ci.yml"
    path.write_text(yaml.safe_dump(broken))
    result = schema_check(path)
    assert result.returncode != 0 and "'step' was unexpected" in result.stdout


def test_every_make_target_the_workflow_runs_exists_and_installs_use_the_lock_file():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    commands = [step["run"] for step in steps if "run" in step]
    used = {m for command in commands for m in re.findall(r"\bmake (\S+)", command)}
    assert used == {"install", "test", "docs", "demo", "ci-report"}
    assert used - {"install"} <= make_targets()  # install is the lead's, undocumented in help
    assert workflow["env"]["PIP_CONSTRAINT"] == "constraints.txt"
    caches = [
        s["with"]["cache-dependency-path"] for s in steps if "setup-python" in s.get("uses", "")
    ]
    assert caches and all("constraints.txt" in cache for cache in caches)
    report = next(c for c in commands if "cml comment" in c)
    assert "ci-report/report.md" in report  # the file `make ci-report` writes


@pytest.mark.parametrize(
    "target", ["help", "results", "status", "predict", "ci-report", "docs", "results-docs"]
)
def test_make_help_lists_the_targets(target):
    assert target in make_targets()
