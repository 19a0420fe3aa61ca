"""The shift suite: real packaged data, the promised kind of shift, deterministic by seed."""

from __future__ import annotations

import numpy as np
import pytest

from adaptflow.core.io import sha256_file
from adaptflow.data import shifts
from adaptflow.data.demo import load_mnist
from adaptflow.data.manifest import scan_domains


@pytest.fixture
def small_mnist(monkeypatch):
    """Every 25th of the 5,000 packaged MNIST digits (200, all classes), to keep tests fast."""
    images, labels = load_mnist()
    monkeypatch.setattr(shifts, "load_mnist", lambda: (images[::25], labels[::25]))
    return images[::25], labels[::25]


def test_the_mnist_m_target_is_rgb_photo_texture_with_the_digit_cut_out(small_mnist):
    digits = small_mnist[0][:20]
    photo = np.full((40, 40, 3), (200, 100, 0), dtype=np.uint8)
    blended = shifts.colour_blend(digits, [photo], seed=0)
    assert blended.shape == (20, 28, 28, 3) and blended.dtype == np.uint8
    background, stroke = digits == 0, digits == 255
    assert (blended[background] == (200, 100, 0)).all()  # the photo where there is no ink
    assert (blended[stroke] == (55, 155, 255)).all()  # |photo - 255| on the strokes


def test_corruptions_are_of_several_kinds_and_repeat_for_a_seed(small_mnist):
    digits = small_mnist[0][:60]
    first, kinds = shifts.corrupt(digits, seed=3)
    again, _ = shifts.corrupt(digits, seed=3)
    other, _ = shifts.corrupt(digits, seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert set(kinds.tolist()) == set(range(len(shifts.CORRUPTIONS)))  # every kind is used
    for kind in range(len(shifts.CORRUPTIONS)):
        rows = kinds == kind
        assert not np.array_equal(first[rows], digits[rows])  # each kind changes the digits


def test_source_and_target_halves_do_not_share_an_image(small_mnist):
    shift = shifts.corrupted_shift(seed=0)
    assert len(shift.source.labels) + len(shift.target.labels) == len(small_mnist[1])
    source = {image.tobytes() for image in shift.source.images}
    originals = {image.tobytes() for image in small_mnist[0]}
    assert source <= originals and len(source) == len(shift.source.images)
    assert set(shift.source.labels.tolist()) == set(range(10)) == set(shift.target.labels.tolist())


def test_the_partial_shift_target_holds_a_subset_of_the_source_classes(tmp_path, small_mnist):
    shift = shifts.write_shift("partial", tmp_path, seed=0)
    assert set(shift.target.labels.tolist()) == set(shifts.PARTIAL_CLASSES)
    manifest = scan_domains(tmp_path / "source", tmp_path / "target", 10**7).manifest()
    classes = manifest.groupby("domain")["label"].unique()
    assert sorted(classes["source"]) == [str(d) for d in range(10)]
    assert sorted(classes["target"]) == [str(d) for d in shifts.PARTIAL_CLASSES]
    assert manifest["readable"].all()


def test_written_shifts_are_byte_identical_for_a_seed(tmp_path, small_mnist):
    shifts.write_shift("mnist_m", tmp_path / "a", seed=1)
    shifts.write_shift("mnist_m", tmp_path / "b", seed=1)
    first = sorted((tmp_path / "a").rglob("*.png"))
    second = sorted((tmp_path / "b").rglob("*.png"))
    assert len(first) == len(small_mnist[1])
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    assert all(sha256_file(p) == sha256_file(q) for p, q in zip(first, second, strict=True))
    manifest = scan_domains(tmp_path / "a" / "source", tmp_path / "a" / "target", 10**7).manifest()
    assert set(manifest.loc[manifest["domain"] == "target", "mode"]) == {"RGB"}
    assert set(manifest.loc[manifest["domain"] == "source", "mode"]) == {"L"}
