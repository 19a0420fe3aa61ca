"""`python flows/pipeline.py` as a user runs it, on tiny DVC projects: a user error (bad params,
a stage refusing its data, a wrong option, no Prefect server at --api-url) is one
`adaptflow error:` line on stderr and exit 2; Prefect's tracebacks of it stay off the console
unless --debug asks for them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.prefect_server import free_port
from tests.helpers.tiny_project import attempts, make_tiny_project

PREFIX = "adaptflow error: "
RUN_SECONDS = 180  # an ephemeral Prefect server starts first: ~10 s, more on a busy machine


def run_flow(project: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)  # a one-off run: its own ephemeral Prefect
    return subprocess.run(
        [sys.executable, str(ROOT / "flows/pipeline.py"), "--root", str(project), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )


def the_one_error(result: subprocess.CompletedProcess) -> str:
    """The run's one `adaptflow error:` line (exit 2, no traceback anywhere on stderr)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith(PREFIX)]
    return line[len(PREFIX) :]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_tiny_project(tmp_path, third="plain")


BAD_LR = "data: {source: source, target: target}\nadapt:\n  lr: fast\n"


def test_a_params_error_is_one_line_without_prefect_tracebacks_and_no_stage_runs(project):
    (project / "params.yaml").write_text(BAD_LR)
    error = the_one_error(run_flow(project))
    assert error.startswith(f"{project / 'params.yaml'}: adapt.lr: input should be a valid number")
    assert error.endswith("(got 'fast')")
    assert attempts(project) == 0


def test_a_stage_refusing_its_data_is_one_line_without_tracebacks_and_is_not_retried(project):
    (project / "in.txt").write_text("bad")
    assert the_one_error(run_flow(project)) == "stage 'first' failed: in.txt: says bad; fix it"
    assert attempts(project) == 1


def test_debug_shows_prefects_tracebacks_of_a_user_error_too(project):
    (project / "params.yaml").write_text(BAD_LR)
    result = run_flow(project, "--debug")
    assert result.returncode == 2
    assert "Encountered exception during execution" in result.stderr
    assert "Traceback" in result.stderr
    assert result.stderr.count(f"\n{PREFIX}{project / 'params.yaml'}: adapt.lr:") == 1


def test_a_wrong_option_is_refused_in_one_line_before_anything_starts(project):
    result = run_flow(project, "--stage-timeout-minutes", "0")
    assert result.stderr.splitlines() == [
        f"{PREFIX}argument --stage-timeout-minutes: must be more than 0, not 0; see "
        "`pipeline.py --help`"
    ]
    assert result.returncode == 2 and attempts(project) == 0


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--stage-timeout-minutes", "-5", "must be more than 0, not -5"),
        ("--stage-timeout-minutes", "soon", "invalid float value: 'soon'"),
        ("--stages-at-once", "0", "must be more than 0, not 0"),
    ],
)
def test_every_bounded_option_says_its_bound(monkeypatch, capsys, option, value, problem):
    spec = importlib.util.spec_from_file_location("_flow_options", ROOT / "flows/pipeline.py")
    flow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flow)
    monkeypatch.setattr(sys, "argv", ["pipeline.py", option, value])
    with pytest.raises(SystemExit) as exited:
        flow._arguments()
    assert exited.value.code == 2
    assert (
        capsys.readouterr().err
        == f"{PREFIX}argument {option}: {problem}; see `pipeline.py --help`\n"
    )


def test_an_api_url_where_nothing_listens_is_refused_in_one_line(project):
    url = f"http://127.0.0.1:{free_port()}/api"  # a port nothing listens on
    result = run_flow(project, "--api-url", url)
    assert result.stderr.splitlines() == [
        f"{PREFIX}cannot reach the Prefect API at {url} ([Errno 111] Connection refused); "
        "start one with `make prefect-server` (127.0.0.1:4200) or leave out --api-url"
    ]
    assert result.returncode == 2 and attempts(project) == 0
