"""`adaptflow results`: the headline of every stage, tolerant of figures it does not know."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from adaptflow.orchestration.overview import headline, headlines, pipeline_stages

DVC_YAML = """
stages:
  demo_data: {cmd: x}
  member:
    foreach: [one, two]
    do: {cmd: "echo ${item}"}
  validate: {cmd: x, metrics: [metrics/validate.json]}
  adapt: {cmd: x, metrics: [metrics/adapt.json]}
  evaluate: {cmd: x, metrics: [metrics/evaluate.json]}
"""


def project(root: Path, **metrics) -> Path:
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "metrics").mkdir()
    for stage, values in metrics.items():
        text = values if isinstance(values, str) else json.dumps(values)
        (root / "metrics" / f"{stage}.json").write_text(text)
    return root


def test_the_headline_picks_the_key_figures_and_ignores_the_rest():
    text = headline(
        "evaluate",
        {
            "target_accuracy": 0.98765,
            "source_only_target_accuracy": 0.5,
            "adaptation_gain": 0.48766,
            "negative_transfer": False,
            "per_class_target_accuracy": {"0": 1.0},
            "something_new": 3,
        },
    )
    assert text == (
        "target accuracy 0.9877 · source-only 0.5000 · gain +0.4877 · negative transfer no"
    )


def test_a_warnings_list_is_shown_with_its_count():
    text = headline("adapt", {"method": "shot", "warnings": ["a is odd", "b too", "c"]})
    assert text == "method shot · warnings: a is odd (+2 more)"
    assert headline("adapt", {"method": "shot", "warnings": []}) == "method shot"


def test_stages_in_pipeline_order_then_unknown_files_missing_and_broken_ones_said(tmp_path):
    root = project(
        tmp_path,
        evaluate={"target_accuracy": 0.9},
        validate={"success": False, "failed_checks": {"every image decodes": 2}, "images": 9},
        adapt="{not json",
        extra={"score": 1.5, "name": "x", "nested": {"a": 1}},
    )
    rows = dict(headlines(root))
    assert list(rows) == ["validate", "adapt", "evaluate", "extra"]
    assert rows["validate"] == "FAILED · failed checks: every image decodes · images 9"
    assert "not valid JSON" in rows["adapt"]
    assert rows["evaluate"] == "target accuracy 0.9000"
    assert rows["extra"] == "score 1.5 · name x"
    (root / "metrics" / "adapt.json").unlink()
    assert dict(headlines(root))["adapt"] == "not run yet (dvc repro)"


def test_foreach_members_are_stages_of_their_own_as_dvc_names_them(tmp_path):
    """`adaptflow status` lists each member (`member@one`), as `dvc repro` and `dvc status` do."""
    names = [name for name, _ in pipeline_stages(project(tmp_path))]
    assert names == ["demo_data", "member@one", "member@two", "validate", "adapt", "evaluate"]


def test_the_table_fits_the_terminal_width(tmp_path):
    long_method = "a_method_with_a_rather_long_name"
    root = project(
        tmp_path,
        adapt={"method": long_method, "validator": "info_max", "selected_score": 2.0},
        evaluate={"target_accuracy": 0.9, "source_only_target_accuracy": 0.5},
    )
    env = {**os.environ, "COLUMNS": "60"}
    result = subprocess.run(
        [sys.executable, "-m", "adaptflow", "results"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60 and len(lines) > 6
    assert long_method in result.stdout and "0.9000" in result.stdout


def test_results_outside_a_project_is_one_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "adaptflow", "results"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.startswith("adaptflow error: ")
    assert "dvc.yaml: missing" in result.stderr
