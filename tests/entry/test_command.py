"""One `adaptflow` command: every subcommand is listed and explains itself."""

from __future__ import annotations

import importlib
import os
import re
import shutil
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
    names = ("check", "predict", "compare", "bench", "flow", "results", "status", "label")
    for name in names:
        assert re.search(rf"^\s+{name}\s+\S", result.stdout, re.MULTILINE), name
    assert set(COMMANDS) == set(names)


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


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    """A git + DVC project with a valid params.yaml, an exported model and two images."""
    from adaptflow.export.onnx import export_onnx, metadata
    from adaptflow.models.classifier import Classifier
    from tests.helpers.tiny_project import make_tiny_project
    from tests.helpers.toy import toy_spec, write_image

    root = make_tiny_project(tmp_path_factory.mktemp("tiny"), third="plain")
    model = Classifier(toy_spec()).eval()
    export_onnx(model, root / "model.onnx", opset=18, props=metadata(model, {"method": "x"}))
    for seed in (1, 2):
        write_image(root / "images" / f"{seed}.png", seed=seed)
    return root


def with_the_reader_gone(*args: str, cwd: Path, buffered: bool) -> tuple[int, str]:
    """`adaptflow <args> | true` without its race: stdout is a pipe nobody reads any more.

    Buffered is Python's default for a pipe (the error comes at the last flush); unbuffered
    (PYTHONUNBUFFERED=1) at the first write.
    """
    env = {**os.environ, "COLUMNS": "100", "PYTHONUNBUFFERED": "" if buffered else "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "adaptflow", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # the reader (`head -1`, `true`) has gone
    stderr = process.stderr.read()
    return process.wait(), stderr


@pytest.mark.parametrize(
    ("args", "buffered"),  # each command once; both ways of meeting the closed pipe
    [
        (["--help"], True),
        (["status"], False),
        (["results"], True),
        (["check"], False),
        (["predict", "images", "-m", "model.onnx"], True),
        (["flow", "--help"], False),
    ],
    ids=lambda value: (
        value[0] if isinstance(value, list) else ("buffered" if value else "unbuffered")
    ),
)
def test_a_closed_pipe_ends_every_command_quietly_with_status_1(tiny_project, args, buffered):
    if args[0] == "flow":  # flows/pipeline.py of the project it runs in
        shutil.copytree(ROOT / "flows", tiny_project / "flows", dirs_exist_ok=True)
    code, stderr = with_the_reader_gone(*args, cwd=tiny_project, buffered=buffered)
    assert stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    # argparse itself ignores a failed write of --help: unbuffered, it exits 0
    assert code == (0 if args[-1] == "--help" and not buffered else 1)
