"""Atomic writes and deterministic serialisation."""

from __future__ import annotations

import pytest
import torch

from adaptflow.io import atomic_dir, atomic_path, save_torch, write_json


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


def test_saving_the_same_tensors_twice_gives_identical_bytes(tmp_path):
    payload = {"images": torch.arange(100, dtype=torch.uint8), "classes": ["a", "b"]}
    save_torch(tmp_path / "one.pt", payload)
    save_torch(tmp_path / "two.pt", payload)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()
