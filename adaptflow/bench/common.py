"""What the benchmarks share: params variants, a scratch project over the demo cache, and the
record of a run (command, date, machine, commit) that every results file carries."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from adaptflow.core import paths
from adaptflow.core.io import write_json
from adaptflow.core.params import Params, parse_params


def with_changes(params: Params, **sections: dict) -> Params:
    """`params` with whole values or section keys replaced (validated again)."""
    raw = params.model_dump(by_alias=True)
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return parse_params(raw)


def with_overrides(params: Params, overrides: list[str]) -> Params:
    """Apply `dotted.key=value` overrides (values parsed as YAML), like `dvc exp run -S`."""
    raw = params.model_dump(by_alias=True)
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return parse_params(raw)


@contextlib.contextmanager
def scratch_project(project: Path) -> Iterator[Path]:
    """Work in a temporary directory that sees `project`'s decoded cache (run `dvc repro
    prepare` first); the library reads data/cache and writes models and state relative to it."""
    if not (project / paths.SOURCE_TRAIN).is_file():
        raise SystemExit(f"{project / paths.CACHE}: missing; run `dvc repro prepare` first")
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="adaptflow-bench-") as scratch:
        os.chdir(scratch)
        try:
            paths.CACHE.parent.mkdir(parents=True)
            os.symlink(project / paths.CACHE, paths.CACHE)
            yield Path(scratch)
        finally:
            os.chdir(previous)


def cpu_name() -> str:
    """The CPU model and the threads PyTorch uses, for benchmark headers."""
    import torch

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} x{torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU x{torch.get_num_threads()} threads"


def command_line() -> str:
    """The command that is running, as one would type it (the interpreter shown as `python`)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if len(argv) > 1 and Path(argv[1]).name == "adaptflow":  # the console script
        argv = argv[1:]
        argv[0] = "adaptflow"
    else:
        argv[0] = "python"
    return shlex.join(argv)


def git_commit(project: Path) -> dict:
    """The commit `project` is at and the tracked files that differ from it (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=project, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "uncommitted_changes": None, "changed_files": None}
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {
        "commit": commit.strip(),
        "uncommitted_changes": bool(changed),
        "changed_files": changed,
    }


class RunRecord:
    """What a results file says about the run behind it: the command, when (UTC), where
    (CPU or GPU, load average), the code (git commit) and how long it took."""

    def __init__(self, project: Path) -> None:
        import torch

        self._started = time.perf_counter()
        self.fields = {
            "command": command_line(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": cpu_name(),
            "cpu_count": os.cpu_count(),
            "load_average_start": _load_average(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            **git_commit(project),
        }

    def finished(self) -> dict:
        """The record, with the run's wall time and the load average at its end."""
        return {
            **self.fields,
            "seconds": round(time.perf_counter() - self._started, 1),
            "load_average_end": _load_average(),
        }

    def write(self, path: Path, results: dict) -> None:
        """Write `results` with this record under "run", atomically."""
        write_json(path, {"run": self.finished(), **results})


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def copy_working_tree(project: Path, destination: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy the working tree as git sees it (tracked files plus untracked ones it does not
    ignore) into `destination`, leaving out paths that start with one of `skip`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if name.startswith(skip) or not (project / name).is_file():
            continue  # skipped, deleted, or a link to a directory (.venv)
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / name, destination / name)
