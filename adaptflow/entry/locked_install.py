"""Installing the lock (constraints.txt) into a fresh virtual environment, several pips at once.

A fresh install is mostly unpacking: torch and its CUDA libraries are 6 GB on disk, and one pip
unpacks one wheel at a time on one core. Every version in the lock is pinned, so nothing needs
resolving: the lock is cut into parts of about equal size (`make lock` writes each package's
installed size after it, `torch==2.14.1  # 1119 MB`), each part is installed by its own pip
with --no-deps, and `pip check` then proves that the installed set satisfies every package's
requirements, adaptflow's included; a lock older than pyproject.toml fails there.

Standard library only: `make install` runs this file with the system Python, before anything
else is installed.

    python3 adaptflow/entry/locked_install.py install --python .venv/bin/python constraints.txt
    pip freeze --all --exclude-editable | python adaptflow/entry/locked_install.py annotate
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_SIZE = re.compile(r"#\s*(\d+)\s*MB\s*$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
PIP_FLAGS = ["-qq", "--no-compile", "--no-deps"]


@dataclass(frozen=True)
class Pin:
    name: str
    requirement: str  # name==version
    megabytes: int  # installed size; 0 when the lock does not say


def read_lock(path: Path) -> list[Pin]:
    """The pinned packages of a constraints file; a line that pins nothing is refused."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = _PIN.match(text)
        if match is None:
            raise SystemExit(
                f"{path}:{number}: {text!r} is not a name==version pin; run make lock to rewrite it"
            )
        size = _SIZE.search(line)
        pins.append(Pin(match[1].lower(), text, int(size[1]) if size else 0))
    return pins


def split(pins: list[Pin], parts: int) -> list[list[Pin]]:
    """Largest first, each to the part with the least so far (then the fewest packages)."""
    loads = [[0, 0, []] for _ in range(max(1, parts))]
    for pin in sorted(pins, key=lambda p: (-p.megabytes, p.name)):
        load = min(loads, key=lambda entry: (entry[0], entry[1]))
        load[0] += pin.megabytes
        load[1] += 1
        load[2].append(pin)
    return [entry[2] for entry in loads if entry[2]]


def install(lock: Path, python: str, parts: int, project: Path) -> None:
    """pip as the lock pins it, then the lock in parallel parts, the project, and pip check."""
    pins = read_lock(lock)
    pip = [python, "-m", "pip", "install", *PIP_FLAGS]
    pinned_pip = [p.requirement for p in pins if p.name == "pip"]
    # pip first and alone: the parts run it while it would be replacing itself
    _run([python, "-m", "pip", "install", "-qq", *(pinned_pip or ["--upgrade", "pip"])])
    with tempfile.TemporaryDirectory(prefix="adaptflow-lock-") as scratch:
        running = []
        for index, part in enumerate(split([p for p in pins if p.name != "pip"], parts)):
            listing = Path(scratch) / f"part-{index}.txt"
            listing.write_text("".join(f"{p.requirement}\n" for p in part))
            running.append((listing, part, subprocess.Popen([*pip, "-r", str(listing)])))
        failed = [(part, process.wait()) for _, part, process in running]
        for part, code in failed:
            if code != 0:
                names = ", ".join(p.name for p in part[:4])
                raise SystemExit(f"{lock}: pip failed (exit {code}) installing {names}, ...")
    # the build backend (setuptools) is in the lock: no isolated build environment to set up
    _run([*pip, "--no-build-isolation", "-e", str(project)])
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        problems = "; ".join(check.stdout.strip().splitlines()[:3])
        raise SystemExit(f"{lock} does not satisfy the requirements ({problems}): run make lock")


def annotate(lines: list[str]) -> list[str]:
    """`pip freeze` lines with each installed distribution's size after it (this Python's)."""
    from importlib.metadata import PackageNotFoundError, distribution

    annotated = []
    for line in lines:
        match = _PIN.match(line.strip())
        if match is None:
            annotated.append(line.rstrip())
            continue
        try:
            files = distribution(match[1]).files or []
        except PackageNotFoundError:
            files = []
        megabytes = round(sum(f.size or 0 for f in files) / 2**20)
        annotated.append(f"{line.strip()}  # {megabytes} MB")
    return annotated


def _run(command: list[str]) -> None:
    code = subprocess.run(command).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {code})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    into = commands.add_parser("install", help="install a lock into the environment of --python")
    into.add_argument("lock", type=Path)
    into.add_argument("--python", required=True, help="the virtual environment's python")
    into.add_argument("--parts", type=int, default=3, help="pips at once (default 3)")
    into.add_argument("--project", type=Path, default=Path("."), help="installed editable")
    commands.add_parser("annotate", help="pip freeze lines on stdin, sizes added, to stdout")
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.lock, args.python, args.parts, args.project)
    else:
        print("\n".join(annotate(sys.stdin.read().splitlines())))


if __name__ == "__main__":
    main()
