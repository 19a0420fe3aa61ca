"""One `adaptflow` command: every subcommand is listed and explains itself."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from adaptflow.entry.command import COMMANDS
from tests.helpers import ROOT


def adaptflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "adaptflow", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_the_installed_script_is_the_console_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["adaptflow"].partition(":")
    assert getattr(importlib.import_module(module), name).__module__ == "adaptflow.entry.command"


def test_help_lists_every_subcommand():
    result = adaptflow("--help")
    assert result.returncode == 0
    for name in ("check", "predict", "compare", "bench", "flow", "results", "status"):
        assert re.search(rf"^\s+{name}\s+\S", result.stdout, re.MULTILINE), name
    assert set(COMMANDS) == {"check", "predict", "compare", "bench", "flow", "results", "status"}


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("predict", "usage: adaptflow predict"),
        ("check", "usage: adaptflow check"),
        ("results", "usage: adaptflow results"),
        ("status", "usage: adaptflow status"),
        ("compare", "usage: adaptflow compare"),
        ("bench", "usage: adaptflow bench"),
        ("flow", "--serve"),  # flows/pipeline.py's own help
    ],
)
def test_each_subcommand_has_help(command, expected):
    result = adaptflow(command, "--help")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_an_unknown_subcommand_is_refused_with_the_choices():
    result = adaptflow("train")
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr


def test_flow_outside_a_project_says_where_to_run_it(tmp_path):
    result = adaptflow("flow", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("adaptflow error: ") and "project directory" in result.stderr
