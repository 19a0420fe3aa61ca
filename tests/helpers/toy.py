"""Toy data, models and projects the tests share: small synthetic images, a learnable two-class
pool, small-CNN specs, and a prepared project (decoded caches and an untrained source model)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adaptflow.adapt.one_method import Adaptation, adapt
from adaptflow.adapt.rules import Evidence
from adaptflow.core import paths
from adaptflow.core.devices import seed_everything
from adaptflow.core.io import save_torch
from adaptflow.core.params import Params, parse_params
from adaptflow.data.cache import CACHE_FILES, UNLABELED, CacheSpec, build_split, split_rows
from adaptflow.data.manifest import scan_domains, write_manifest
from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier, ModelSpec, save_classifier
from adaptflow.models.outputs import Outputs
from adaptflow.training.validators import Predictions


def write_image(path: Path, seed: int, size: int = 16, mode: str = "L") -> Path:
    """A random (hence unique) image file."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


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

PROJECT_CLASSES = ("a", "b", "c")


def project_spec() -> ModelSpec:
    """A small-CNN classifier spec for the 8x8 grey images of the `PROJECT_CLASSES`."""
    return ModelSpec(
        backbone="small_cnn",
        classes=list(PROJECT_CLASSES),
        channels=1,
        image_size=8,
        bottleneck_dim=8,
        mean=[0.5],
        std=[0.3],
    )


def make_tree(root: Path, seed: int, size: int = 8) -> None:
    """An ImageFolder domain of the three `PROJECT_CLASSES`: 8 train and 3 test images each."""
    for offset, (split, count) in enumerate((("train", 8), ("test", 3))):
        for k, label in enumerate(PROJECT_CLASSES):
            for i in range(count):
                image_seed = seed * 1000 + offset * 500 + k * 100 + i  # every image differs
                write_image(root / split / label / f"{i}.png", image_seed, size)


def scramble_classes(split_root: Path) -> None:
    """Rotate the class folders a <- b <- c <- a: every label in `split_root` is now wrong."""
    shutil.move(split_root / "a", split_root / "tmp")
    shutil.move(split_root / "c", split_root / "a")
    shutil.move(split_root / "b", split_root / "c")
    shutil.move(split_root / "tmp", split_root / "b")


def prepare_project(project: Path, scramble: bool) -> None:
    """Raw domains `src` and `tgt`, their manifest, decoded caches and an untrained source model.

    `scramble` swaps the target train class folders around before anything is scanned.
    """
    make_tree(project / "src", seed=1)
    make_tree(project / "tgt", seed=2)
    if scramble:
        scramble_classes(project / "tgt" / "train")
    manifest = scan_domains(project / "src", project / "tgt", 10**7).manifest()
    write_manifest(manifest, project / paths.MANIFEST)  # present, so reading it would show
    for name, rows in split_rows(manifest, SMALL_CACHE).items():
        payload = build_split(
            rows, list(PROJECT_CLASSES), SMALL_CACHE, labeled=name not in UNLABELED
        )
        save_torch(project / CACHE_FILES[name], payload)
    seed_everything(0)
    save_classifier(project / paths.SOURCE_MODEL, Classifier(project_spec()))


def small_params(method: str, **selection) -> Params:
    """Params for a few quick adaptation steps on a `prepare_project` project."""
    return parse_params(
        {
            "data": {"source": "src", "target": "tgt", "image_size": 8},
            "adapt": {"method": method, "epochs": 2, "steps_per_epoch": 3, "batch_size": 8},
            "selection": {"validator": "info_max", "max_samples": 64, **selection},
        }
    )


def adapt_in(project: Path, params: Params) -> Adaptation:
    """The adapt stage's library, run with `project` as the working directory."""
    here = Path.cwd()
    os.chdir(project)
    try:
        return adapt(params, torch.device("cpu"))
    finally:
        os.chdir(here)


CPU = torch.device("cpu")


def one_hot_logits(labels: list[int], classes: int = 3) -> torch.Tensor:
    """Confident logits of these labels."""
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).float() * 10


def evidence_of(labels_by_model: dict[str, list[int]]) -> Evidence:
    """What the rules read, made from each model's target labels (no models, no images)."""
    predictions = {
        name: Predictions(None, Outputs(one_hot_logits(labels), torch.zeros(len(labels), 2), None))
        for name, labels in labels_by_model.items()
    }
    return Evidence(predictions, {}, torch.zeros(0), CPU)
