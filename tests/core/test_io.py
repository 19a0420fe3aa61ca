"""Atomic writes and deterministic serialisation."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adaptflow.core import io
from adaptflow.core.io import (
    TEMP_SUFFIX,
    NotARegularFile,
    atomic_dir,
    atomic_path,
    read_regular_file,
    remove_stale_temporaries,
    save_torch,
    sha256_file,
    write_json,
)
from tests.helpers import ROOT


def run_python(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter that imports this checkout's adaptflow."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True
    )


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failed_directory_write_keeps_the_previous_directory(tmp_path):
    folder = tmp_path / "plots"
    with atomic_dir(folder) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError
    assert (folder / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plots"]


def test_temporaries_a_killed_run_left_are_swept_and_nothing_else(tmp_path):
    (tmp_path / "models").mkdir()
    finished = tmp_path / "models/adapted.pt"
    finished.write_bytes(b"weights")
    user_file = tmp_path / "models/.notes.tmp"  # not ours: kept
    user_file.write_text("mine")
    stale_file = tmp_path / f"models/.adapted.pt.x1{TEMP_SUFFIX}"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / f"models/.plots.y2{TEMP_SUFFIX}"
    (stale_dir / "sub").mkdir(parents=True)
    removed = remove_stale_temporaries([tmp_path / "models", tmp_path / "absent"])
    assert set(removed) == {stale_file, stale_dir}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".notes.tmp", "adapted.pt"]


def test_saving_the_same_tensors_twice_gives_identical_bytes(tmp_path):
    payload = {"images": torch.arange(100, dtype=torch.uint8), "classes": ["a", "b"]}
    save_torch(tmp_path / "one.pt", payload)
    save_torch(tmp_path / "two.pt", payload)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()


def test_outputs_get_the_permissions_of_the_users_umask_not_mkstemps_0600(tmp_path):
    script = """
import os, sys
from pathlib import Path
os.umask(0o027)
from adaptflow.core.io import atomic_dir, write_json
write_json(Path(sys.argv[1]) / "metrics.json", {})
with atomic_dir(Path(sys.argv[1]) / "plots") as folder:
    write_json(folder / "inner.json", {})
"""
    assert run_python(script, str(tmp_path)).returncode == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes == {"metrics.json": 0o640, "plots": 0o750, "inner.json": 0o640}


def test_the_bytes_and_the_directory_entry_reach_the_disk_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def replace(source, destination):
        events.append(("rename", Path(source).name, Path(destination).name))
        real_replace(source, destination)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    with atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"weights")
    assert events == [
        ("fsync", tmp.name),  # the file's bytes, before it takes the name
        ("rename", tmp.name, "model.pt"),
        ("fsync", tmp_path.name),  # the new directory entry
    ]


def test_a_kill_between_the_two_renames_of_a_directory_keeps_the_previous_version(tmp_path):
    folder = tmp_path / "candidates"
    with atomic_dir(folder) as tmp:
        (tmp / "epoch_0001.pt").write_bytes(b"previous weights")
    script = """
import os, signal, sys
from pathlib import Path
from adaptflow.core.io import atomic_dir
real_replace = os.replace

def replace_then_die(source, destination):
    real_replace(source, destination)
    if ".old-" in str(destination):  # the previous version is set aside: killed right here
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_then_die
with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "epoch_0002.pt").write_bytes(b"new weights")
"""
    assert run_python(script, str(folder)).returncode == -signal.SIGKILL
    assert not folder.exists()  # what the kill left: the previous version parked, the new one
    assert len(list(tmp_path.glob(f".candidates.*{TEMP_SUFFIX}"))) == 2

    remove_stale_temporaries([tmp_path])  # what every stage does first
    assert [p.name for p in tmp_path.iterdir()] == ["candidates"]
    assert [p.name for p in folder.iterdir()] == ["epoch_0001.pt"]
    assert (folder / "epoch_0001.pt").read_bytes() == b"previous weights"


@pytest.mark.timeout(30)
def test_a_fifo_or_device_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)  # opened for reading, it would wait for a writer forever
    for read in (read_regular_file, sha256_file):
        with pytest.raises(NotARegularFile, match=r"a FIFO \(named pipe\), not a regular file"):
            read(fifo)
    with pytest.raises(NotARegularFile, match="a character device"):
        read_regular_file(Path("/dev/null"))
    (tmp_path / "plain.bin").write_bytes(b"abc")
    assert read_regular_file(tmp_path / "plain.bin") == b"abc"
