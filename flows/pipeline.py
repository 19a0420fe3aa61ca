"""The adaptflow Prefect flow: one task per DVC stage, in DAG order, run through DVC.

DVC decides what is stale, so a scheduled run recomputes only what changed. The flow records
which stages ran or were skipped (with durations) and the headline results as artifacts;
transient failures (a crash, a kill, a busy DVC lock) are retried, a user error (bad data or
params) fails the flow once with the stage's own message.

    python flows/pipeline.py                 # one run now
    python flows/pipeline.py --serve         # serve with the nightly schedule (needs a server)
    python flows/pipeline.py --compare       # every method as a DVC experiment, one table
    prefect deploy --all                     # or deploy prefect.yaml's deployment to a work pool
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from adaptflow.runner import StageFailed, run_stage, stage_order
from adaptflow.sweep import (
    collect,
    resolve_methods,
    run_comparison,
    table,
    warn_if_results_uncommitted,
)

PROJECT = Path(__file__).resolve().parents[1]
NIGHTLY = "0 2 * * *"


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry crashes, kills and lock contention; never retry a user error."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, StageFailed) or error.transient


@task(
    task_run_name="{stage}",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
)
def dvc_stage(stage: str, root: str) -> dict[str, Any]:
    """Reproduce one DVC stage; return what happened to it."""
    logger = get_run_logger()
    run = run_stage(Path(root), stage, on_line=logger.info)
    logger.info("%s: %s in %.1f s", stage, run.status, run.seconds)
    return {"stage": run.stage, "status": run.status, "seconds": round(run.seconds, 2)}


def _results_markdown(root: Path, records: list[dict[str, Any]]) -> str:
    lines = ["# adaptflow run", "", "| stage | status | seconds |", "|---|---|---:|"]
    lines += [f"| {r['stage']} | {r['status']} | {r.get('seconds', '')} |" for r in records]
    if any(r["status"] == "failed" for r in records):
        return "\n".join(lines) + "\n"
    adaptation, evaluation = root / "metrics" / "adapt.json", root / "metrics" / "evaluate.json"
    if adaptation.is_file():
        warnings = json.loads(adaptation.read_text())["warnings"]  # negative transfer among them
        lines += ["", f"**Label-free warnings**: {len(warnings) or 'none'}"]
        lines += [f"- {warning}" for warning in warnings]
    if evaluation.is_file():
        m = json.loads(evaluation.read_text())
        verdict = "NEGATIVE TRANSFER" if m["negative_transfer"] else "no negative transfer"
        lines += [
            "",
            f"**{m['method']}**: target accuracy {m['target_accuracy']:.4f} vs source-only "
            f"{m['source_only_target_accuracy']:.4f} ({verdict}); macro-F1 "
            f"{m['target_macro_f1']:.4f}; selected by {m['selection']['validator']}.",
        ]
    ranking = root / "metrics" / "rank.json"
    if ranking.is_file() and json.loads(ranking.read_text()).get("enabled"):
        lines += ["", "#" + (root / "reports" / "rank.md").read_text().strip()]  # a subsection
    return "\n".join(lines) + "\n"


@flow(name="adaptflow-pipeline", log_prints=True)
def pipeline(root: str = str(PROJECT)) -> list[dict[str, Any]]:
    """Run every stage in order through DVC and report what ran, was skipped or failed."""
    project = Path(root)
    records: list[dict[str, Any]] = []
    current = None
    try:
        for current in stage_order(project):
            records.append(dvc_stage(current, str(project)))
    except Exception as error:
        message = error.message if isinstance(error, StageFailed) else str(error)
        records.append({"stage": current, "status": "failed", "message": message})
        raise
    finally:
        create_table_artifact(
            key="adaptflow-stages", table=records, description="DVC stages: ran, skipped, failed"
        )
        create_markdown_artifact(
            key="adaptflow-report", markdown=_results_markdown(project, records)
        )
    return records


@task(task_run_name="experiment-portfolio", retries=1, retry_delay_seconds=10)
def portfolio_experiment(methods: list[str], root: str, overrides: list[str]) -> str:
    """The methods as one DVC experiment of the auto portfolio (the workspace is left untouched)."""
    return run_comparison(Path(root), methods, overrides, on_line=get_run_logger().info)


@flow(name="adaptflow-compare", log_prints=True)
def compare(
    methods: list[str] | None = None, overrides: list[str] | None = None, root: str = str(PROJECT)
) -> list[dict[str, Any]]:
    """Run the methods as one portfolio experiment; publish them ranked without target labels."""
    methods = resolve_methods(methods)
    warn_if_results_uncommitted(Path(root))
    name = portfolio_experiment(methods, root, overrides or [])
    rows, warnings = collect(Path(root), name)
    create_table_artifact(
        key="adaptflow-compare",
        table=[asdict(r) for r in rows],
        description="adaptation methods ranked by the label-free rule (accuracy: oracle only)",
    )
    create_markdown_artifact(key="adaptflow-compare-report", markdown=table(rows, warnings))
    return [asdict(r) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve on the nightly schedule")
    parser.add_argument("--cron", default=NIGHTLY, help=f"schedule for --serve ({NIGHTLY})")
    parser.add_argument(
        "--compare",
        nargs="*",
        metavar="METHOD",
        help="compare methods as DVC experiments (none named: all)",
    )
    args = parser.parse_args()
    if args.serve:
        pipeline.serve(name="adaptflow-nightly", cron=args.cron)
    elif args.compare is not None:
        compare(args.compare or None)
    else:
        pipeline()


if __name__ == "__main__":
    main()
