"""Leak guard for stage processes under test: watches what a process opens and lists.

Python imports `sitecustomize` at start-up from sys.path, so a test that puts this folder on
the PYTHONPATH of the processes it starts (a stage, or `dvc repro` and every stage it runs),
and names a policy file in ADAPTFLOW_LEAK_GUARD, gets this hook into them before any of their
own code runs.

The policy is JSON: {"log": path, "forbidden": {name: [paths]}}. `name` is a stage (a process
running `stages/<name>.py`), "label" (the `adaptflow label` console script) or "*" (any
other process); relative paths are taken from the
process's working directory. An audit hook (PEP 578) sees every `open` (builtin open, os.open,
io.open_code: so torch.load, numpy, pandas and PIL too) and every directory listing
(`os.listdir`, `os.scandir`: pathlib, glob and os.walk use them). Reading or listing a
forbidden path, or anything under it, appends one JSON line to the log and raises
PermissionError, so the process fails as well. Writes are not watched.

One exemption: DVC's own bookkeeping. Inside `dvc exp run`, dvclive asks DVC for the
workspace's outputs, and DVC walks the whole workspace (listing folders, trying .gitignore
files), target folders included; nothing of it reaches the stage's data. A read whose nearest
caller outside the standard library is DVC, dvclive or the libraries they walk with passes.
"""

from __future__ import annotations

import json
import os
import sys

WATCHED = ("open", "os.listdir", "os.scandir")
# packages whose reads are DVC's workspace bookkeeping, not a stage reading data
BOOKKEEPING = frozenset(
    {"dvc", "dvclive", "dvc_data", "dvc_objects", "scmrepo", "dulwich", "pygit2", "fsspec"}
)


def _by_bookkeeping() -> bool:
    """Whether the nearest caller outside the standard library (and this hook) is DVC's."""
    frame = sys._getframe(2)
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if package not in sys.stdlib_module_names and package != __name__:
            return package in BOOKKEEPING
        frame = frame.f_back
    return False


def _process_name() -> str:
    script = sys.argv[0] if sys.argv else ""
    folder, base = os.path.split(script)
    if os.path.basename(folder) == "stages" and base.endswith(".py"):
        return base[: -len(".py")]
    if base == "adaptflow" and sys.argv[1:2] == ["label"]:  # the console script
        return "label"
    return "*"


def _is_read(event: str, args: tuple) -> bool:
    if event != "open":
        return True  # a listing
    _, mode, flags = args
    if isinstance(mode, str):  # builtin open / io.open_code
        return "r" in mode or "+" in mode
    return (flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)  # os.open


def _install(policy_file: str) -> None:
    with open(policy_file) as handle:
        policy = json.load(handle)
    name = _process_name()
    forbidden = [os.path.realpath(p) for p in policy["forbidden"].get(name, [])]
    if not forbidden:
        return
    log = os.open(policy["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def watch(event: str, args: tuple) -> None:
        if event not in WATCHED or not args:
            return
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)) or not _is_read(event, args):
            return
        real = os.path.realpath(os.fsdecode(path))
        hit = next((f for f in forbidden if real == f or real.startswith(f + os.sep)), None)
        if hit is None or _by_bookkeeping():
            return
        record = {"process": name, "event": event, "path": real, "forbidden": hit}
        os.write(log, (json.dumps(record) + "\n").encode())
        raise PermissionError(f"leak guard: {name} read {real} (forbidden: {hit})")

    sys.addaudithook(watch)


if os.environ.get("ADAPTFLOW_LEAK_GUARD"):
    _install(os.environ["ADAPTFLOW_LEAK_GUARD"])
