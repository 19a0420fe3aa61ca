"""Shared fixtures: small synthetic ImageFolder trees and in-memory image pools."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaptflow.data.cache import CacheSpec
from adaptflow.data.pools import ImagePool
from adaptflow.models import ModelSpec

from .prefect_server import prefect_server  # noqa: F401 - a session fixture: a real Prefect server

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("ADAPTFLOW_LOG_LEVEL", "WARNING")


def write_image(path: Path, seed: int, size: int = 16, mode: str = "L") -> Path:
    """A random (hence unique) image file."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture
def make_domain() -> Callable[..., Path]:
    """Write `root/{train,test}/<class>/<i>.png` with `counts[split]` images per class."""
    seeds = iter(range(1, 10**6))

    def make(
        root: Path,
        classes: tuple[str, ...] = ("a", "b", "c"),
        counts: dict[str, int] | None = None,
        size: int = 16,
    ) -> Path:
        counts = counts or {"train": 6, "test": 3}
        for split, count in counts.items():
            for label in classes:
                for i in range(count):
                    write_image(root / split / label / f"{i:03d}.png", next(seeds), size)
        return root

    return make


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with the working directory in a fresh temporary project."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def bars_pool(
    name: str, count: int, size: int = 16, labeled: bool = True, seed: int = 0, shift: float = 0.0
) -> ImagePool:
    """A learnable toy domain: class 0 has a bright left half, class 1 a bright right half.

    `shift` moves the background brightness, a simple stand-in for a domain shift.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    images = torch.rand(count, 1, size, size, generator=generator) * 0.3 + shift
    half = size // 2
    images[labels == 0, :, :, :half] += 0.6
    images[labels == 1, :, :, half:] += 0.6
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImagePool(name, images, labels if labeled else None, ["left", "right"])


def toy_spec(bottleneck_dim: int = 16, mean: float = 0.5) -> ModelSpec:
    """A small-CNN classifier spec for 16x16 grey images of the two `bars_pool` classes."""
    return ModelSpec(
        backbone="small_cnn",
        classes=["left", "right"],
        channels=1,
        image_size=16,
        bottleneck_dim=bottleneck_dim,
        mean=[mean],
        std=[0.3],
    )


# decoding settings for the small synthetic trees of these tests
SMALL_CACHE = CacheSpec(
    image_size=8,
    channels=1,
    max_pixels=10**7,
    source_val_fraction=0.2,
    target_labeled_per_class=0,
    seed=0,
)
