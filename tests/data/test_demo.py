"""The embedded demo: real MNIST and UCI digits, MNIST geometry, deterministic files."""

from __future__ import annotations

import numpy as np
import pytest

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import sha256_file
from adaptflow.core.params import DemoParams
from adaptflow.data.demo import load_uci_digits, to_mnist_geometry, write_demo


def test_uci_digits_are_brought_to_mnist_geometry():
    images, labels = load_uci_digits()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and sorted(set(labels)) == list(range(10))
    ink = images.mean(0) > 10
    rows, cols = np.nonzero(ink)
    # the digit lives in the central 20x20 box, with MNIST's 4-pixel margin (give or take centring)
    assert rows.min() >= 2 and rows.max() <= 25 and cols.min() >= 2 and cols.max() <= 25


def test_centring_moves_the_centre_of_mass_to_the_middle():
    digit = np.zeros((8, 8))
    digit[:, :3] = 16  # ink on the left only
    image = to_mnist_geometry(digit).astype(float)
    cols = np.arange(28)
    centre = (image.sum(0) * cols).sum() / image.sum()
    assert abs(centre - 13.5) <= 1.0


def test_the_demo_never_writes_outside_the_project(in_tmp, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    with pytest.raises(AdaptflowError, match="demo.root: .* outside"):
        write_demo(DemoParams(root=str(outside)))
    assert list(outside.iterdir()) == []


def test_demo_trees_are_deterministic_and_respect_limits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = DemoParams(root=str(tmp_path / "a"), source_limit=100, target_limit=80, seed=3)
    counts = write_demo(params)
    assert counts == {"mnist": {"train": 75, "test": 25}, "digits": {"train": 60, "test": 20}}
    classes = sorted(p.name for p in (tmp_path / "a" / "mnist" / "train").iterdir())
    assert classes == [str(d) for d in range(10)]
    write_demo(params.model_copy(update={"root": str(tmp_path / "b")}))
    first = sorted((tmp_path / "a").rglob("*.png"))
    second = sorted((tmp_path / "b").rglob("*.png"))
    assert [p.relative_to(tmp_path / "a") for p in first] == [
        p.relative_to(tmp_path / "b") for p in second
    ]
    assert all(sha256_file(p) == sha256_file(q) for p, q in zip(first, second, strict=True))
