"""Atomic writes and deterministic serialisation."""

from __future__ import annotations

import pytest
import torch

from adaptflow.io import (
    TEMP_SUFFIX,
    atomic_dir,
    atomic_path,
    remove_stale_temporaries,
    save_torch,
    write_json,
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
