"""Every entry point answers --help without doing any work, and refuses arguments it does not
take (a stage once ignored --help and trained for minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

STAGE_SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "stages").glob("*.py"))
ENTRY_POINTS = [
    *([script] for script in STAGE_SCRIPTS),
    ["flows/pipeline.py"],
    ["-m", "adaptflow", "compare"],
    ["-m", "adaptflow", "check"],
]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, *(str(ROOT / a) if a.endswith(".py") else a for a in args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e[-1])
def test_help_describes_the_entry_point_and_does_nothing_else(entry, tmp_path):
    result = run([*entry, "--help"], cwd=tmp_path)  # no params.yaml here: nothing may run
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and len(result.stdout.splitlines()) > 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e[-1])
def test_an_unknown_argument_is_refused(entry, tmp_path):
    result = run([*entry, "--epochs", "3"], cwd=tmp_path)
    assert result.returncode == 2
    assert "unrecognized arguments: --epochs" in result.stderr
    assert list(tmp_path.iterdir()) == []
