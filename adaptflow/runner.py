"""Running the DVC pipeline one stage at a time, for orchestrators (flows/pipeline.py).

DVC stays in charge of caching: a stage runs through `dvc repro --single-item`, so it is
skipped exactly when `dvc repro` would skip it. This module only adds what an orchestrator
needs on top: the stage order, whether a stage is stale, its output as it happens, and
whether a failure is worth retrying.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adaptflow.cli import ERROR_PREFIX

LOCK_CONTENTION = "Unable to acquire lock"
COMMAND_FAILED = "failed to run:"  # DVC's words when a stage command exits non-zero


class StageFailed(RuntimeError):
    """A stage exited non-zero. `transient` failures (crash, kill, lock contention) may be retried;
    user errors (bad data, bad params) fail the same way every time and are not."""

    def __init__(self, stage: str, message: str, transient: bool) -> None:
        super().__init__(f"stage {stage!r} failed: {message}")
        self.stage = stage
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class StageRun:
    stage: str
    status: str  # "ran" or "skipped"
    seconds: float


def _dvc(root: Path, *args: str) -> list[str]:
    """A dvc command line using this interpreter's DVC (no shell, no string building)."""
    return [sys.executable, "-m", "dvc", *args]


def stage_order(root: Path) -> list[str]:
    """The pipeline's stages in an order that respects dependencies (dvc.yaml order on ties)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = [s for s in repo.index.stages if s.cmd]
        position = {s.name: i for i, s in enumerate(stages)}
        graph = nx.DiGraph()
        graph.add_nodes_from(position)
        for upstream, downstream in _edges(repo.index.graph):
            if upstream in position and downstream in position:
                graph.add_edge(upstream, downstream)
    return list(nx.lexicographical_topological_sort(graph, key=position.get))


def _edges(graph) -> list[tuple[str, str]]:
    """(upstream, downstream) stage names; DVC's graph points from a stage to its dependencies."""
    return [(dep.name, stage.name) for stage, dep in graph.edges()]


def is_stale(root: Path, stage: str) -> bool:
    """Whether `dvc repro` would run this stage now (its deps, params or outs changed)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return bool(repo.status(targets=[f"{Path(root).resolve() / 'dvc.yaml'}:{stage}"]))


def _failure_message(stage: str, lines: list[str], code: int) -> StageFailed:
    """Classify a failed `dvc repro`: user error, transient fault, or DVC refusing to run."""
    user_errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if user_errors:
        return StageFailed(stage, user_errors[-1][len(ERROR_PREFIX) :].strip(), transient=False)
    if any(LOCK_CONTENTION in line for line in lines):
        return StageFailed(stage, "another DVC process holds the repository lock", transient=True)
    dvc_errors = [line.strip() for line in lines if line.startswith("ERROR:")]
    if any(COMMAND_FAILED in line for line in dvc_errors):  # the stage crashed or was killed
        return StageFailed(stage, dvc_errors[-1], transient=True)
    message = dvc_errors[-1] if dvc_errors else f"dvc exited with status {code}"
    return StageFailed(stage, message, transient=False)  # DVC refused: fix the pipeline first


def run_stage(
    root: Path, stage: str, on_line: Callable[[str], None] = print, force: bool = False
) -> StageRun:
    """Reproduce one stage through DVC, streaming its output; raise StageFailed on failure."""
    stale = force or is_stale(root, stage)
    started = time.monotonic()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    process = subprocess.Popen(
        _dvc(root, *args),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    for line in process.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        if line.strip():
            on_line(line)
    code = process.wait()
    if code != 0:
        raise _failure_message(stage, lines, code)
    return StageRun(stage, "ran" if stale else "skipped", time.monotonic() - started)
