"""What a pipeline run tells its user: the stage table, label-free warnings and the headline.

Written for the Prefect flow's report artifact from the files the stages leave behind, so the
flow re-implements nothing: the evaluation headline is the top of reports/evaluate.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adaptflow.core import paths


def _stage_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| stage | status | seconds | why |", "|---|---|---:|---|"]
    for r in records:
        why = r.get("reason") or r.get("message", "")
        lines.append(f"| {r['stage']} | {r['status']} | {r.get('seconds', '')} | {why} |")
    return lines


def _headline(report: Path) -> list[str]:
    """The opening paragraphs of a markdown report, up to its first table or subsection."""
    lines = report.read_text(encoding="utf-8").splitlines()
    head = []
    for line in lines[1:]:  # past the title
        if line.startswith(("|", "## ")):
            break
        head.append(line)
    return head


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def render_flow_report(root: Path, records: list[dict[str, Any]]) -> str:
    """Markdown for one run: which stages ran or were skipped and why, then the results."""
    lines = ["# adaptflow run", "", *_stage_table(records)]
    if any(r["status"] == "failed" for r in records):
        return "\n".join(lines) + "\n"
    adaptation = _read(root / paths.metrics_file("adapt"))
    if adaptation is not None:  # label-free warnings (adaptflow/adapt/diagnostics.py), first
        warnings = adaptation.get("warnings", [])
        lines += ["", *(f"**Warning:** {w}" for w in warnings)] if warnings else []
    evaluation = root / paths.REPORTS / "evaluate.md"
    if evaluation.is_file():
        lines += ["", *_headline(evaluation)]
    ranking = _read(root / paths.metrics_file("rank"))
    if ranking is not None and ranking.get("enabled"):
        lines += ["", "#" + (root / paths.REPORTS / "rank.md").read_text().strip()]  # a subsection
    return "\n".join(lines).rstrip() + "\n"
