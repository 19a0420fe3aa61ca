"""The decoded cache: split assignment, and no target label in what adaptation reads."""

from __future__ import annotations

import shutil

import pytest
import torch

from adaptflow.core.errors import AdaptflowError
from adaptflow.data.cache import CacheSpec, build_split, source_classes, split_rows
from adaptflow.data.manifest import scan_domains
from tests.helpers.toy import SMALL_CACHE as SPEC


def manifest_of(source, target):
    return scan_domains(source, target, 10**7).manifest()


def test_splits_partition_the_readable_images(tmp_path, make_domain):
    manifest = manifest_of(
        make_domain(tmp_path / "s", counts={"train": 10, "test": 3}), make_domain(tmp_path / "t")
    )
    parts = split_rows(manifest, SPEC)
    assert {k: len(v) for k, v in parts.items()} == {
        "source_train": 24,
        "source_val": 6,
        "source_test": 9,
        "target_train": 18,
        "target_labeled": 0,
        "target_test": 9,
    }
    seen = [path for rows in parts.values() for path in rows["path"]]
    assert len(seen) == len(set(seen)) == len(manifest)


def test_target_train_payload_has_no_labels_and_no_paths(tmp_path, make_domain):
    manifest = manifest_of(make_domain(tmp_path / "s"), make_domain(tmp_path / "t"))
    rows = split_rows(manifest, SPEC)["target_train"]
    payload = build_split(rows, source_classes(manifest), SPEC, labeled=False)
    assert set(payload) == {"images", "sha256", "classes"}
    assert payload["images"].dtype == torch.uint8 and payload["images"].shape == (18, 1, 8, 8)


def test_scrambling_target_class_folders_leaves_target_train_identical(tmp_path, make_domain):
    source = make_domain(tmp_path / "s")
    target = make_domain(tmp_path / "t")
    before = build_split(
        split_rows(manifest_of(source, target), SPEC)["target_train"],
        ["a", "b", "c"],
        SPEC,
        labeled=False,
    )
    train = target / "train"
    shutil.move(train / "a", train / "tmp")
    shutil.move(train / "b", train / "a")
    shutil.move(train / "tmp", train / "b")
    after = build_split(
        split_rows(manifest_of(source, target), SPEC)["target_train"],
        ["a", "b", "c"],
        SPEC,
        labeled=False,
    )
    assert torch.equal(before["images"], after["images"]) and before["sha256"] == after["sha256"]


def test_k_labeled_target_images_per_class_are_carved_out(tmp_path, make_domain):
    manifest = manifest_of(make_domain(tmp_path / "s"), make_domain(tmp_path / "t"))
    parts = split_rows(manifest, CacheSpec(**{**SPEC.__dict__, "target_labeled_per_class": 2}))
    labeled = parts["target_labeled"]
    assert labeled.groupby("label").size().to_dict() == {"a": 2, "b": 2, "c": 2}
    assert not set(labeled["path"]) & set(parts["target_train"]["path"])
    assert not set(labeled["path"]) & set(parts["target_test"]["path"])


def test_asking_for_more_labeled_target_images_than_exist_is_an_error(tmp_path, make_domain):
    manifest = manifest_of(make_domain(tmp_path / "s"), make_domain(tmp_path / "t"))
    with pytest.raises(AdaptflowError, match="adapt.target_labeled_per_class=7"):
        split_rows(manifest, CacheSpec(**{**SPEC.__dict__, "target_labeled_per_class": 7}))


def test_labeling_every_target_train_image_is_refused_with_the_number_that_fits(
    tmp_path, make_domain
):
    manifest = manifest_of(make_domain(tmp_path / "s"), make_domain(tmp_path / "t"))  # 6 a class
    with pytest.raises(
        AdaptflowError, match="leaving none unlabeled to adapt on; set it to at most 5"
    ):
        split_rows(manifest, CacheSpec(**{**SPEC.__dict__, "target_labeled_per_class": 6}))
