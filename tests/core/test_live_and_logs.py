"""dvclive plots appear only when the stage succeeds; log lines come from rank 0 only."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.live import live_logger
from adaptflow.core.logs import configure_logging, is_main_process
from tests.helpers.tiny_project import git


@pytest.fixture
def repository(in_tmp):
    git(in_tmp, "init", "-q")
    (in_tmp / "README").write_text("x")
    git(in_tmp, "add", "README")
    git(in_tmp, "commit", "-qm", "one")
    return in_tmp


def test_a_stage_that_succeeds_leaves_its_plots_in_place(repository):
    with live_logger("adapt") as live:
        live.log_metric("select/info_max", 0.5)
        live.next_step()
        assert not paths.plots_dir("adapt").exists()  # written aside until the stage ends
    logged = paths.plots_dir("adapt") / "plots" / "metrics" / "select" / "info_max.tsv"
    assert logged.read_text().splitlines()[1].endswith("0.5")


def test_a_stage_that_fails_leaves_the_previous_plots(repository):
    with live_logger("adapt") as live:
        live.log_metric("loss", 1.0)
    before = sorted(p.name for p in paths.plots_dir("adapt").rglob("*"))
    with pytest.raises(RuntimeError), live_logger("adapt") as live:
        live.log_metric("other", 2.0)
        raise RuntimeError("the stage failed")
    assert sorted(p.name for p in paths.plots_dir("adapt").rglob("*")) == before
    assert not list(paths.PLOTS.glob(".*"))  # no temporary left behind


def test_a_repository_without_a_commit_is_one_line_naming_git(in_tmp):
    git(in_tmp, "init", "-q")
    with pytest.raises(AdaptflowError, match="^git: .*commit the project once"):
        with live_logger("adapt"):
            pass
    assert not paths.PLOTS.exists() or not any(paths.PLOTS.iterdir())


def test_ranks_above_zero_log_nothing_and_write_no_plots(in_tmp, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    with live_logger("adapt", enabled=is_main_process()) as live:
        assert live is None
    assert not paths.PLOTS.exists()


def test_logging_is_plain_lines_on_stderr_with_noisy_libraries_quieted():
    script = (
        "import logging\n"
        "from adaptflow.core.logs import configure_logging\n"
        "configure_logging()\n"
        "logging.getLogger('adaptflow.x').info('kept')\n"
        "logging.getLogger('great_expectations').info('dropped')\n"
    )
    for rank, expected in (("0", True), ("1", False)):
        env = {"RANK": rank, "ADAPTFLOW_LOG_LEVEL": "INFO", "PATH": "/usr/bin:/bin"}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env
        )
        assert result.stdout == "" and "dropped" not in result.stderr
        assert ("INFO adaptflow.x: kept" in result.stderr) == expected


def test_configure_logging_quiets_third_party_loggers():
    configure_logging()
    assert logging.getLogger("onnxscript").level == logging.WARNING
