"""The pull-request report: DVC's diff tables folded under headings, and a base revision git
does not know refused before anything is rendered (the whole report runs in tests/e2e)."""

from __future__ import annotations

import pytest

from adaptflow.core.errors import AdaptflowError
from adaptflow.orchestration.ci_report import _folded, _revision, write_report
from tests.helpers.tiny_project import git

METRICS_DIFF = """| Path | Metric | HEAD | workspace | Change |
|---|---|---|---|---|
| metrics/evaluate.json | target_accuracy | 0.9 | 0.95 | 0.05 |
| metrics/export.json | top1_agreement | 1.0 | 0.99 | -0.01 |
"""


def test_a_diff_is_folded_under_its_heading_with_the_number_of_changes():
    lines = _folded("Metrics", METRICS_DIFF, "No metric changed.")
    assert lines[0] == "## Metrics"
    assert "<details><summary>2 changed (click to show)</summary>" in lines
    assert "| metrics/evaluate.json | target_accuracy | 0.9 | 0.95 | 0.05 |" in "\n".join(lines)


def test_an_empty_diff_says_so_instead_of_an_empty_table():
    assert _folded("Params", "", "No param changed.") == ["## Params", "", "No param changed.", ""]


def test_a_base_git_does_not_know_is_refused_before_anything_is_written(tmp_path):
    git(tmp_path, "init", "-q")
    with pytest.raises(AdaptflowError, match="base revision 'main' is not a commit"):
        _revision(tmp_path, "main")
    with pytest.raises(AdaptflowError, match="not a commit"):
        write_report(tmp_path, "main", tmp_path / "ci-report")
    assert not (tmp_path / "ci-report").exists()
