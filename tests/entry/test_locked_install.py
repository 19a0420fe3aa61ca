"""The lock installer's reading and splitting of constraints.txt (make install runs it whole)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adaptflow.entry.locked_install import Pin, annotate, read_lock, split

ROOT = Path(__file__).resolve().parents[2]


def test_the_lock_pins_every_package_with_its_size(tmp_path):
    pins = read_lock(ROOT / "constraints.txt")
    names = {p.name for p in pins}
    assert {"torch", "pip", "setuptools", "pytest"} <= names  # the build backend and dev tools
    assert all(p.requirement.count("==") == 1 for p in pins)
    assert next(p for p in pins if p.name == "torch").megabytes > 100


def test_a_line_that_pins_nothing_is_refused_naming_the_line(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# header\nnumpy==2.3.1  # 31 MB\ntorch>=2\n")
    with pytest.raises(SystemExit, match=r"constraints.txt:3: 'torch>=2' is not a name==version"):
        read_lock(lock)


def test_parts_are_balanced_by_size_and_keep_every_package():
    pins = [Pin(f"p{i}", f"p{i}==1", size) for i, size in enumerate([900, 800, 500, 400, 5, 0, 0])]
    parts = split(pins, 3)
    assert sorted(p.name for part in parts for p in part) == sorted(p.name for p in pins)
    loads = sorted(sum(p.megabytes for p in part) for part in parts)
    assert loads == [805, 900, 900]  # largest first, each to the lightest part
    assert len(split(pins, 1)) == 1 and len(split(pins[:2], 4)) == 2  # no empty parts


def test_annotate_adds_the_installed_size_and_keeps_other_lines():
    lines = annotate(["# a comment", "pytest==1.0", "not-installed-anywhere==1.0"])
    assert lines[0] == "# a comment"
    assert lines[1].startswith("pytest==1.0  # ") and lines[1].endswith(" MB")
    assert lines[2] == "not-installed-anywhere==1.0  # 0 MB"


def test_it_runs_on_the_standard_library_alone():
    """make install runs the file with the system Python, before adaptflow's dependencies."""
    script = ROOT / "adaptflow/entry/locked_install.py"
    done = subprocess.run(  # -S: no site-packages at all
        [sys.executable, "-I", "-S", str(script), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "install" in done.stdout and "annotate" in done.stdout
