"""Per-stage wall time of a fresh demo run, and the figures that run produced.

Copies the working tree (as git sees it, without dvc.lock or any earlier results) into a
scratch git repository, then runs each stage in pipeline order as `dvc repro --single-item
<stage>` and times it (DVC's own start-up included), then times a `dvc repro` that has
nothing to do. Records the wall times and the run's metrics/evaluate.json and
metrics/export.json (the default configuration's figures).

    python -m adaptflow.bench demo-run --json results/stage_timings.json   # the whole pipeline
    python -m adaptflow.bench demo-run --stages demo_data validate --set demo.source_limit=200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from adaptflow.bench.common import RunRecord, copy_working_tree, with_overrides
from adaptflow.bench.tables import table
from adaptflow.core import paths
from adaptflow.core.params import load_params
from adaptflow.orchestration.dvc_runner import reproduce_stage, run_dvc, stage_order

# results of a run in the developer's checkout stay behind: the copy starts fresh
LEFT_BEHIND = ("dvc.lock", "metrics/", "plots/", "reports/", "results/")
RECORDED_METRICS = ("evaluate", "export")
GIT = ["git", "-c", "user.name=adaptflow-bench", "-c", "user.email=bench@adaptflow"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stages", nargs="*", default=None, help="default: every stage")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", type=Path, help="run (and keep the copy) here, not in /tmp")
    parser.add_argument("--json", type=Path, help="also write the figures here")


def run(args: argparse.Namespace) -> None:
    project = Path.cwd()
    record = RunRecord(project)
    if args.workdir:
        args.workdir.mkdir(parents=True)  # refuses an existing folder: the copy starts fresh
        results = time_run(project, args.workdir.resolve(), args.stages, args.set)
    else:
        with tempfile.TemporaryDirectory(prefix="adaptflow-demo-run-") as scratch:
            results = time_run(project, Path(scratch), args.stages, args.set)
    if args.json:
        record.write(args.json, results)
    rows = [[s["stage"], f"{s['seconds']:.1f}"] for s in results["stages"]]
    print("\n" + table(["stage", "wall time (s)"], rows, right={1}))
    print(
        f"all stages {results['total_seconds']:.1f} s; no-op rerun {results['noop_seconds']:.1f} s"
    )


def time_run(
    project: Path, workspace: Path, stages: list[str] | None, overrides: list[str]
) -> dict:
    """Copy the project into `workspace`, run and time its stages there; the figures."""
    copy_working_tree(project, workspace, skip=LEFT_BEHIND)
    if overrides:
        params = with_overrides(load_params(workspace / paths.PARAMS), overrides)
        (workspace / paths.PARAMS).write_text(yaml.safe_dump(params.model_dump(by_alias=True)))
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "demo run"]):
        run_git(workspace, command)
    # stage commands (`python stages/...`) run this interpreter on the copy's code
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ["PYTHONPATH"] = str(workspace)
    chosen = stages or stage_order(workspace)
    timings = []
    for stage in chosen:
        run = reproduce_stage(workspace, stage, on_line=lambda line: print(line, flush=True))
        timings.append({"stage": stage, "seconds": round(run.seconds, 2), "status": run.status})
        print(f"--- {stage}: {run.status} in {run.seconds:.1f} s", flush=True)
    started = time.monotonic()  # what a user types: naming every stage costs DVC ~1 s more
    run_dvc(workspace, ["repro", *(stages or [])], label="no-op", on_line=lambda line: None)
    return {
        "stage_command": "dvc repro --single-item <stage>",
        "noop_command": " ".join(["dvc repro", *(stages or [])]),
        "overrides": overrides,
        "stages": timings,
        "total_seconds": round(sum(t["seconds"] for t in timings), 2),
        "noop_seconds": round(time.monotonic() - started, 2),
        "metrics": {
            name: json.loads((workspace / f"metrics/{name}.json").read_text())
            for name in RECORDED_METRICS
            if (workspace / f"metrics/{name}.json").is_file()
        },
    }


def run_git(workspace: Path, arguments: list[str]) -> None:
    subprocess.run([*GIT, *arguments], cwd=workspace, check=True, capture_output=True)
