"""Tiny DVC projects (a few one-line stages and a valid params.yaml) for the orchestration tests:
they exercise DVC, the runner and Prefect for real without training anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

PY = sys.executable

WRITE_A = """
import pathlib, sys
text = pathlib.Path('in.txt').read_text()
with open('attempts.log', 'a') as log: log.write('first\\n')
if text.startswith('bad'):
    print('adaptflow error: in.txt: says bad; fix it', file=sys.stderr); sys.exit(2)
pathlib.Path('a.txt').write_text(text.upper())
"""
WRITE_B = "import pathlib; pathlib.Path('b.txt').write_text(pathlib.Path('a.txt').read_text() * 2)"
FLAKY = """
import pathlib, sys
marker = pathlib.Path('crashed-once')
if not marker.exists():
    marker.write_text('x'); raise SystemExit('simulated crash')
pathlib.Path('c.txt').write_text(pathlib.Path('b.txt').read_text())
"""
# Slow the first time: writes its PID, then sleeps until killed (or `slow-once` exists).
SLOW = """
import os, pathlib, time
pathlib.Path('slow.pid').write_text(str(os.getpid()))
if not pathlib.Path('slow-once').exists():
    pathlib.Path('slow-once').write_text('x')
    time.sleep(600)
pathlib.Path('c.txt').write_text(pathlib.Path('b.txt').read_text())
"""
PLAIN = "import pathlib; pathlib.Path('c.txt').write_text(pathlib.Path('b.txt').read_text())"
SCRATCH = "attempts.log\ncrashed-once\nslow-once\nslow.pid\n"


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def make_tiny_project(root: Path, third: str = "flaky") -> Path:
    """first -> second -> <third> (`flaky`: crashes once; `slow`: sleeps the first time;
    `plain`: neither), with a params.yaml the whole-params check accepts, as a committed git +
    DVC repository."""
    (root / "in.txt").write_text("hello")
    scripts = {
        "write_a.py": WRITE_A,
        "write_b.py": WRITE_B,
        f"{third}.py": {"flaky": FLAKY, "slow": SLOW, "plain": PLAIN}[third],
    }
    for name, code in scripts.items():
        (root / name).write_text(code)
    stages = {
        "first": {"cmd": f"{PY} write_a.py", "deps": ["in.txt", "write_a.py"], "outs": ["a.txt"]},
        "second": {"cmd": f"{PY} write_b.py", "deps": ["a.txt"], "outs": ["b.txt"]},
        third: {"cmd": f"{PY} {third}.py", "deps": ["b.txt"], "outs": ["c.txt"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    for domain in ("source", "target"):
        (root / domain).mkdir()
    (root / "params.yaml").write_text("data: {source: source, target: target}\n")
    (root / ".gitignore").write_text(SCRATCH)
    git(root, "init", "-q")
    subprocess.run([PY, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    subprocess.run([PY, "-m", "dvc", "config", "core.analytics", "false"], cwd=root, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tiny pipeline")
    return root


def attempts(root: Path) -> int:
    """How many times the first stage's command started."""
    log = root / "attempts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# Writes when it started and ended, 3 s apart: overlapping intervals mean concurrent runs.
MEMBER = """
import pathlib, sys, time
started = time.time(); time.sleep(3)
pathlib.Path(f'member_{sys.argv[1]}.txt').write_text(f'{started} {time.time()}')
"""
GATHER = """
import pathlib
parts = [pathlib.Path(f'member_{m}.txt').read_text() for m in ('a', 'b')]
pathlib.Path('gathered.txt').write_text('\\n'.join(parts))
"""


def make_foreach_project(root: Path) -> Path:
    """first -> member@a, member@b (a `foreach` stage; independent, 3 s each) -> gather."""
    make_tiny_project(root, third="plain")
    (root / "member.py").write_text(MEMBER)
    (root / "gather.py").write_text(GATHER)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    stages["member"] = {
        "foreach": ["a", "b"],
        "do": {
            "cmd": f"{PY} member.py ${{item}}",
            "deps": ["a.txt", "member.py"],
            "outs": ["member_${item}.txt"],
        },
    }
    stages["gather"] = {
        "cmd": f"{PY} gather.py",
        "deps": ["member_a.txt", "member_b.txt"],
        "outs": ["gathered.txt"],
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a foreach stage")
    return root
