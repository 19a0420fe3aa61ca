"""The run report the Prefect flow publishes, made from the files the stages leave behind."""

from __future__ import annotations

import json
from pathlib import Path

from adaptflow.orchestration.flow_report import render_flow_report

RECORDS = [{"stage": "rank", "status": "ran", "seconds": 1.0, "reason": "changed params: rank"}]


def write(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


def test_the_report_says_why_each_stage_ran(tmp_path):
    assert "| rank | ran | 1.0 | changed params: rank |" in render_flow_report(tmp_path, RECORDS)


def test_the_report_carries_the_candidate_ranking_only_when_enabled(tmp_path):
    write(tmp_path, "metrics/rank.json", '{"enabled": false}')
    write(tmp_path, "reports/rank.md", "Ranking is off (rank.enabled: false).\n")
    assert "Ranking is off" not in render_flow_report(tmp_path, RECORDS)
    write(tmp_path, "metrics/rank.json", '{"enabled": true}')
    write(tmp_path, "reports/rank.md", "# Candidate source models\n\n| r18 | 1 |\n")
    report = render_flow_report(tmp_path, RECORDS)
    assert "## Candidate source models" in report and "| r18 | 1 |" in report


def test_the_report_opens_with_the_evaluation_headline_and_not_its_tables(tmp_path):
    write(tmp_path, "reports/evaluate.md", "# Evaluation: shot\n\nTarget accuracy 0.41.\n\n| a |\n")
    report = render_flow_report(tmp_path, RECORDS)
    assert "Target accuracy 0.41." in report and "| a |" not in report


def test_the_adapt_stages_label_free_warnings_come_first(tmp_path):
    warning = "the label-free selector (info_max) prefers the unadapted source model"
    write(tmp_path, "metrics/adapt.json", json.dumps({"warnings": [warning]}))
    write(tmp_path, "reports/evaluate.md", "# Evaluation: shot\n\nTarget accuracy 0.41.\n")
    report = render_flow_report(tmp_path, RECORDS)
    assert f"**Warning:** {warning}" in report
    assert report.index(warning) < report.index("Target accuracy 0.41.")
    write(tmp_path, "metrics/adapt.json", json.dumps({"warnings": []}))
    assert "Warning" not in render_flow_report(tmp_path, RECORDS)
