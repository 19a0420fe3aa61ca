"""Running DVC commands for orchestrators (flows/pipeline.py, adaptflow.orchestration.compare).

DVC stays in charge of caching: a stage runs through `dvc repro --single-item`, so it is
skipped exactly when `dvc repro` would skip it. This module only adds what an orchestrator
needs on top: the stage order, whether a stage is stale and why, its output as it happens, a
time limit, whether a failure is worth retrying, and that nothing it started outlives it.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from adaptflow.core.errors import ERROR_PREFIX, AdaptflowError

LOCK_CONTENTION = "Unable to acquire lock"
COMMAND_FAILED = "failed to run:"  # DVC's words when a stage command exits non-zero
STOP_GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL when stopping a DVC process group
REAP_SECONDS = 10.0  # for a SIGKILLed group's members to leave the run queue


class StageFailed(AdaptflowError):
    """A DVC command exited non-zero or ran out of time. `transient` failures (crash, kill, lock
    contention) may be retried; user errors (bad data, bad params) and time-outs fail the same
    way every time and are not."""

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
    reason: str  # why it ran ("changed deps: data/target (modified)") or "up to date"


def dvc_command(*args: str) -> list[str]:
    """A dvc command line using this interpreter's DVC (no shell, no string building)."""
    return [sys.executable, "-m", "dvc", *args]


def _stage_graph(root: Path):
    """The stages (name -> command) and their dependency graph (upstream -> downstream)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        commands = {s.name: s.cmd for s in repo.index.stages if s.cmd}
        graph = nx.DiGraph()
        graph.add_nodes_from(commands)  # in dvc.yaml order
        for upstream, downstream in _edges(repo.index.graph):
            if upstream in commands and downstream in commands:
                graph.add_edge(upstream, downstream)
    return commands, graph


def stage_order(root: Path) -> list[str]:
    """The pipeline's stages in an order that respects dependencies (dvc.yaml order on ties)."""
    import networkx as nx

    commands, graph = _stage_graph(root)
    position = {name: i for i, name in enumerate(commands)}
    return list(nx.lexicographical_topological_sort(graph, key=position.get))


def stage_groups(root: Path) -> list[list[str]]:
    """`stage_order`, with the members of one `foreach` stage (`name@item`) that do not depend
    on each other in one group: stages an orchestrator may run at the same time."""
    _, graph = _stage_graph(root)
    groups: list[list[str]] = []
    for stage in stage_order(root):
        last = groups[-1] if groups else []
        same_foreach = "@" in stage and last and last[0].split("@")[0] == stage.split("@")[0]
        if same_foreach and not any(graph.has_edge(other, stage) for other in last):
            last.append(stage)
        else:
            groups.append([stage])
    return groups


def stage_command(root: Path, stage: str) -> list[str]:
    """A stage's command line as dvc.yaml gives it (split like a shell, run without one)."""
    import shlex

    commands, _ = _stage_graph(root)
    return shlex.split(commands[stage])


def _edges(graph) -> list[tuple[str, str]]:
    """(upstream, downstream) stage names; DVC's graph points from a stage to its dependencies."""
    return [(dep.name, stage.name) for stage, dep in graph.edges()]


def stale_reason(root: Path, stage: str) -> str | None:
    """Why `dvc repro` would run this stage now (its deps, params or outs changed), else None."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        status = repo.status(targets=[f"{Path(root).resolve() / 'dvc.yaml'}:{stage}"])
    changes = [change for entries in status.values() for change in entries]
    return "; ".join(_describe_change(change) for change in changes) if changes else None


def _describe_change(change: Any) -> str:
    """One of DVC's status entries as words: `changed deps: a.txt (modified), b (new)`."""
    if not isinstance(change, dict):
        return str(change)  # e.g. "always changed"
    return "; ".join(f"{kind}: {', '.join(_leaves(detail))}" for kind, detail in change.items())


def _leaves(detail: Any) -> list[str]:
    if not isinstance(detail, dict):
        return [str(detail)]
    leaves = []
    for name, value in detail.items():
        # params nest one level deeper: {"params.yaml": {"adapt.epochs": "modified"}}
        leaves += _leaves(value) if isinstance(value, dict) else [f"{name} ({value})"]
    return leaves


def _classify(stage: str, lines: list[str], code: int, via_dvc: bool = True) -> StageFailed:
    """Classify a failed command: user error, transient fault, or DVC refusing to run."""
    user_errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if user_errors:
        return StageFailed(stage, user_errors[-1][len(ERROR_PREFIX) :].strip(), transient=False)
    if not via_dvc:  # a stage's own command: anything but a user error is a crash or a kill
        return StageFailed(stage, f"exited with status {code}", transient=True)
    if any(LOCK_CONTENTION in line for line in lines):
        return StageFailed(stage, "another DVC process holds the repository lock", transient=True)
    dvc_errors = [line.strip() for line in lines if line.startswith("ERROR:")]
    if any(COMMAND_FAILED in line for line in dvc_errors):  # the stage crashed or was killed
        return StageFailed(stage, dvc_errors[-1], transient=True)
    message = dvc_errors[-1] if dvc_errors else f"dvc exited with status {code}"
    return StageFailed(stage, message, transient=False)  # DVC refused: fix the pipeline first


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a process started with `start_new_session=True` and everything it started.

    Returns once no member of the group runs any more: a signal is only queued when `kill`
    returns, and a stage outliving its leader (DVC) by a few scheduler ticks would still be
    writing outputs after the caller moved on.
    """
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return  # the whole group is gone
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    process.wait()
    deadline = time.monotonic() + REAP_SECONDS
    while _group_still_running(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_still_running(group: int) -> bool:
    """Whether a process of the group has not ended (an unreaped orphan is a zombie: ended)."""
    for candidate in psutil.process_iter(["status"]):
        try:
            if (
                os.getpgid(candidate.pid) == group
                and candidate.info["status"] != psutil.STATUS_ZOMBIE
            ):
                return True
        except (ProcessLookupError, psutil.Error):
            continue  # ended while we looked
    return False


def _pump(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _stream(
    process: subprocess.Popen, on_line: Callable[[str], None], deadline: float | None
) -> list[str] | None:
    """The process's output lines, passed to `on_line` as they come; None if time ran out."""
    pending: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, pending), daemon=True).start()
    lines = []
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return None
        try:  # short waits keep signals (SIGTERM, Ctrl-C) and the deadline responsive
            line = pending.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            return lines
        lines.append(line)
        if line.strip():
            on_line(line)


def run_command(
    root: Path,
    command: list[str],
    *,
    label: str,
    on_line: Callable[[str], None] = print,
    timeout_seconds: float | None = None,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Run `command` in `root`, streaming its output; raise StageFailed if it fails.

    The command (DVC and the stage it runs, or a stage's own command) gets a process group of
    its own: if time runs out, or this process is interrupted (Ctrl-C, SIGTERM, a Prefect
    cancellation), the whole group is stopped before the exception goes on, so no stage keeps
    running unattended.
    """
    process = subprocess.Popen(
        command,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
        env=env,
    )
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    try:
        lines = _stream(process, on_line, deadline)
    finally:
        if process.poll() is None:
            stop_process_group(process)
    if lines is None:
        raise StageFailed(
            label,
            f"stopped after {timeout_seconds:.0f} s (the stage time limit); raise the limit or "
            "make the stage faster",
            transient=False,
        )
    code = process.wait()
    if code != 0:
        raise _classify(label, lines, code, via_dvc=command[:3] == dvc_command())
    return lines


def run_dvc(root: Path, args: list[str], **options: Any) -> list[str]:
    """`dvc <args>` through `run_command` (same options)."""
    return run_command(root, dvc_command(*args), **options)


def run_stage_alone(
    root: Path,
    stage: str,
    *,
    threads: int,
    on_line: Callable[[str], None] = print,
    timeout_seconds: float | None = None,
) -> StageRun:
    """Run a stale stage's command outside `dvc repro`, so that several can run at once (DVC
    holds one lock per repository); `record_stage` then records its result in dvc.lock."""
    reason = stale_reason(root, stage)
    started = time.monotonic()
    if reason:
        threaded = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        run_command(
            root,
            stage_command(root, stage),
            label=stage,
            on_line=on_line,
            timeout_seconds=timeout_seconds,
            env=threaded,
        )
    status = "ran" if reason else "skipped"
    return StageRun(stage, status, time.monotonic() - started, reason or "up to date")


def record_stage(root: Path, stage: str, on_line: Callable[[str], None] = print) -> None:
    """Record what `run_stage_alone` produced (deps, params, outs) in dvc.lock and the cache."""
    run_dvc(root, ["commit", "--force", stage], label=stage, on_line=on_line)


def reproduce_stage(
    root: Path,
    stage: str,
    on_line: Callable[[str], None] = print,
    force: bool = False,
    timeout_seconds: float | None = None,
) -> StageRun:
    """`dvc repro` one stage (if stale), streaming its output; raise StageFailed on failure."""
    reason = "forced" if force else stale_reason(root, stage)
    started = time.monotonic()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    run_dvc(root, args, label=stage, on_line=on_line, timeout_seconds=timeout_seconds)
    status = "ran" if reason else "skipped"
    return StageRun(stage, status, time.monotonic() - started, reason or "up to date")
