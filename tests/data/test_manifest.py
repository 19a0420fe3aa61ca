"""Scanning ImageFolder roots: every file becomes a row; layout problems stop the scan."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptflow.core.errors import AdaptflowError
from adaptflow.data.manifest import read_manifest, scan_domains, write_manifest
from tests.helpers.toy import write_image

MAX = 10_000_000


def test_a_clean_layout_gives_one_readable_row_per_image(tmp_path, make_domain):
    source = make_domain(tmp_path / "src")
    target = make_domain(tmp_path / "tgt")
    frame = scan_domains(source, target, MAX).manifest()
    assert len(frame) == 2 * 3 * (6 + 3)
    assert frame["readable"].all()
    assert set(frame["domain"]) == {"source", "target"}
    assert frame["sha256"].str.len().eq(64).all()


def test_the_manifest_round_trips_through_csv(tmp_path, make_domain):
    frame = scan_domains(make_domain(tmp_path / "s"), make_domain(tmp_path / "t"), MAX).manifest()
    write_manifest(frame, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert back.equals(frame)


@pytest.mark.timeout(60)
def test_bad_files_become_rows_with_a_reason(tmp_path, make_domain):
    source = make_domain(tmp_path / "src")
    target = make_domain(tmp_path / "tgt")
    (target / "test" / "a" / "zero.png").write_bytes(b"")
    (target / "test" / "a" / "dir.png").mkdir()
    outside = write_image(tmp_path / "elsewhere.png", seed=99)
    os.symlink(outside, target / "test" / "b" / "link.png")
    locked = write_image(target / "test" / "c" / "locked.png", seed=98)
    locked.chmod(0)
    os.mkfifo(target / "test" / "c" / "fifo.png")  # opened for reading, it would wait forever
    frame = scan_domains(source, target, MAX).manifest()
    errors = dict(zip(frame["path"].str.rsplit("/", n=1).str[-1], frame["error"], strict=True))
    assert "empty file" in errors["zero.png"]
    assert "directory named like an image" in errors["dir.png"]
    assert "outside the data root" in errors["link.png"]
    assert (
        errors["fifo.png"] == "a FIFO (named pipe), not a regular file; remove it, or put "
        "the image file there"
    )
    if os.geteuid() != 0:  # root reads any file
        assert "permission denied" in errors["locked.png"]
    assert not frame.loc[frame["path"].str.endswith("zero.png"), "readable"].item()


def test_unlabeled_target_train_images_are_accepted(tmp_path, make_domain):
    source = make_domain(tmp_path / "src")
    target = make_domain(tmp_path / "tgt", counts={"test": 3})
    for i in range(4):
        write_image(target / "train" / f"loose{i}.png", seed=500 + i)
    frame = scan_domains(source, target, MAX).manifest()
    loose = frame[(frame["domain"] == "target") & (frame["split"] == "train")]
    assert len(loose) == 4 and (loose["label"] == "").all() and loose["readable"].all()


def test_loose_images_elsewhere_are_reported(tmp_path, make_domain):
    source = make_domain(tmp_path / "src")
    write_image(source / "test" / "loose.png", seed=7)
    frame = scan_domains(source, make_domain(tmp_path / "tgt"), MAX).manifest()
    assert (
        "outside a class folder"
        in frame.loc[frame["path"].str.endswith("loose.png"), "error"].item()
    )


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_missing_split_stops_the_scan_naming_the_folder(tmp_path, make_domain, split):
    source, target = make_domain(tmp_path / "src"), make_domain(tmp_path / "tgt")
    shutil.rmtree(target / split)
    with pytest.raises(AdaptflowError, match=f"data.target: .*tgt/{split} is missing"):
        scan_domains(source, target, MAX)


def test_missing_or_overlapping_roots_are_refused(tmp_path, make_domain):
    source = make_domain(tmp_path / "src")
    with pytest.raises(AdaptflowError, match="data.target: .*nowhere does not exist"):
        scan_domains(source, tmp_path / "nowhere", MAX)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(AdaptflowError, match="data.target: .*a-file is not a directory"):
        scan_domains(source, tmp_path / "a-file", MAX)
    with pytest.raises(AdaptflowError, match="overlap"):
        scan_domains(tmp_path, source, MAX)


def test_no_images_at_all_is_an_error(tmp_path):
    for domain in ("src", "tgt"):
        for split in ("train", "test"):
            (tmp_path / domain / split / "a").mkdir(parents=True)
    with pytest.raises(AdaptflowError, match="no images found"):
        scan_domains(tmp_path / "src", tmp_path / "tgt", MAX)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layout=st.dictionaries(
        st.sampled_from(["cat", "dog", "émoji ✓", "with space", "0"]),
        st.tuples(st.integers(0, 3), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    )
)
def test_every_image_file_is_counted_once_whatever_the_layout(tmp_path_factory, layout):
    root = tmp_path_factory.mktemp("prop")
    seed = 0
    expected = 0
    for domain in ("src", "tgt"):
        for label, (n_train, n_test) in layout.items():
            for split, n in (("train", n_train), ("test", n_test)):
                folder = root / domain / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    seed += 1
                    write_image(folder / f"{i}.png", seed, size=8)
                    expected += 1
    if expected == 0:
        with pytest.raises(AdaptflowError):
            scan_domains(root / "src", root / "tgt", MAX)
        return
    frame = scan_domains(root / "src", root / "tgt", MAX).manifest()
    assert len(frame) == expected and frame["path"].is_unique and frame["readable"].all()
    assert set(frame["label"]) <= set(layout)
