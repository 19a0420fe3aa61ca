"""`adaptflow status` and `adaptflow results` in every state a checkout can be in: a corrupt
DVC file, no dvc.lock or .dvc yet, a `dvc repro` holding DVC's lock, broken metrics files.
Either a table, or one `adaptflow error:` line naming the file and what to do (exit 2)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from adaptflow.orchestration.dvc_runner import dvc_command, stop_process_group
from tests.entry.test_command import adaptflow
from tests.helpers.tiny_project import make_tiny_project

PREFIX = "adaptflow error: "
LOCK_ADVICE = "restore it with `git checkout dvc.lock`, or delete it and rerun `dvc repro`"


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """A tiny git + DVC project after `dvc repro`: dvc.lock and outputs in place."""
    root = make_tiny_project(tmp_path_factory.mktemp("reproduced"), third="plain")
    subprocess.run(dvc_command("repro", "-q"), cwd=root, check=True)
    return root


@pytest.fixture
def project(reproduced, tmp_path) -> Path:
    return Path(shutil.copytree(reproduced, tmp_path / "project", symlinks=True))


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command's only stderr line, an `adaptflow error:` line; exit 2, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(PREFIX)
    return line[len(PREFIX) :]


CORRUPT = {
    "dvc.lock not YAML": (
        "dvc.lock",
        b"schema: '2.0'\nstages:\n  first: [\n",
        f"dvc.lock: not valid YAML (line 4); {LOCK_ADVICE}",
    ),
    "dvc.lock of the wrong shape": (
        "dvc.lock",
        b"schema: '2.0'\nstages: 5\n",
        f"dvc.lock: not what DVC expects (expected a dictionary at stages); {LOCK_ADVICE}",
    ),
    "dvc.lock with a merge conflict": (
        "dvc.lock",
        b"<<<<<<< HEAD\nschema: '2.0'\n=======\n>>>>>>> theirs\n",
        f"dvc.lock: not valid YAML (line 2); {LOCK_ADVICE}",
    ),
    "dvc.yaml not YAML": (
        "dvc.yaml",
        b"stages:\n  first: [\n",
        "dvc.yaml: not valid YAML (line 3); fix it, or restore it with `git checkout dvc.yaml`",
    ),
    "dvc.yaml of the wrong shape": (
        "dvc.yaml",
        b"stages:\n  first: {deps: [in.txt]}\n",
        "dvc.yaml: not what DVC expects (required key not provided at stages -> first -> cmd); "
        "fix it, or restore it with `git checkout dvc.yaml`",
    ),
    "params.yaml not YAML": (
        "params.yaml",
        b"data: [\n",
        "params.yaml: not valid YAML (line 2); fix it, or restore it with "
        "`git checkout params.yaml`",
    ),
    "params.yaml not UTF-8": (
        "params.yaml",
        b"data: {source: caf\xe9, target: target}\n",
        "params.yaml: byte 0xe9 on line 1 is not UTF-8; fix it, or restore it with "
        "`git checkout params.yaml`",
    ),
    ".dvc/config corrupt": (
        ".dvc/config",
        b"[core\nno = closing bracket\n",
        "{root}/.dvc/config: Invalid line ('[core') (matched as neither section nor keyword) at "
        "line 1; fix it, or restore it with `git checkout .dvc/config`",
    ),
}


@pytest.mark.parametrize("command", ["status", "results"])
@pytest.mark.parametrize(("file", "content", "expected"), CORRUPT.values(), ids=list(CORRUPT))
def test_a_corrupt_file_is_one_line_naming_it_and_how_to_restore_it(
    project, command, file, content, expected
):
    (project / file).write_bytes(content)
    message = one_error_line(adaptflow(command, cwd=project))
    assert message == expected.format(root=project)


def test_before_the_first_repro_status_lists_every_stage_as_changed_and_results_runs(project):
    (project / "dvc.lock").unlink()
    status = adaptflow("status", cwd=project)
    assert status.returncode == 0 and status.stderr == ""
    assert "changed deps: in.txt, write_a.py" in status.stdout
    assert adaptflow("results", cwd=project).returncode == 0


def test_without_a_dvc_directory_status_says_to_dvc_init_and_results_still_runs(project):
    shutil.rmtree(project / ".dvc")
    message = one_error_line(adaptflow("status", cwd=project))
    assert message == f"{project}: not a DVC repository (no .dvc directory); run `dvc init` there"
    assert adaptflow("results", cwd=project).returncode == 0


@pytest.mark.parametrize("command", ["status", "results"])
def test_outside_a_project_both_say_where_to_run_them(tmp_path, command):
    message = one_error_line(adaptflow(command, cwd=tmp_path))
    expected = f"{tmp_path / 'dvc.yaml'}: missing; run this in an adaptflow project directory"
    assert message == expected


def test_corrupt_metrics_files_are_rows_that_say_rerun_the_stage(project):
    (project / "metrics").mkdir()
    (project / "metrics" / "first.json").write_text('{"accuracy": ')
    (project / "metrics" / "second.json").write_bytes(b'{"accuracy": \xff}')
    result = adaptflow("results", cwd=project)
    assert result.returncode == 0 and result.stderr == ""
    for stage in ("first", "second"):
        assert f"metrics/{stage}.json is not valid JSON; rerun the stage" in result.stdout


def test_status_during_a_dvc_repro_says_a_run_is_in_progress_and_results_still_reads(tmp_path):
    project = make_tiny_project(tmp_path, third="slow")
    repro = subprocess.Popen(
        dvc_command("repro"),
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stop_process_group stops dvc and the stage it runs
    )
    try:
        for _ in range(600):  # the slow stage sleeps until stopped; DVC holds its lock meanwhile
            if (project / "slow.pid").exists() or repro.poll() is not None:
                break
            time.sleep(0.1)
        assert repro.poll() is None, "dvc repro ended before the slow stage"
        message = one_error_line(adaptflow("status", cwd=project))
        results = adaptflow("results", cwd=project)
    finally:
        stop_process_group(repro)
    assert message == (
        f"a DVC run is in progress in {project} (a `dvc repro` or another dvc command holds "
        "DVC's lock); try again when it has finished"
    )
    assert results.returncode == 0 and results.stderr == ""
