"""A small project on disk for the CUDA tests: decoded cache splits, a source model, params.

Only torch and the GPU bundle's packages may be imported here (tests/bench/test_gpu_check.py
checks): no pandas, DVC or Prefect, so the splits are written directly in the cache's format.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adaptflow.adapt.one_method import Adaptation, adapt
from adaptflow.core import paths
from adaptflow.core.devices import seed_everything
from adaptflow.core.io import save_torch
from adaptflow.core.params import Params, parse_params
from adaptflow.models.classifier import Classifier, ModelSpec, save_classifier
from adaptflow.source_model.pretrain import SourceModel, train_source_model

CLASSES = ["up", "down", "left", "right"]


@dataclass(frozen=True)
class Scale:
    """How big the toy runs are: a real backbone on a GPU, a tiny one for CPU runs of the tests."""

    backbone: str
    image_size: int
    batch_size: int
    images: int  # per training split (validation: a quarter)
    workers: int  # DataLoader processes per domain (loader: workers)


GPU_SCALE = Scale("resnet18", image_size=64, batch_size=128, images=1024, workers=4)
CPU_SCALE = Scale("small_cnn", image_size=16, batch_size=16, images=128, workers=2)


def toy_images(count: int, size: int, seed: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB noise with a bright half (top, bottom, left or right) that names the class.

    `shift` moves the background brightness: the domain shift between source and target.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % len(CLASSES)
    images = torch.rand(count, 3, size, size, generator=generator) * 0.3 + shift
    half = size // 2
    images[labels == 0, :, :half, :] += 0.6
    images[labels == 1, :, half:, :] += 0.6
    images[labels == 2, :, :, :half] += 0.6
    images[labels == 3, :, :, half:] += 0.6
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def _split(images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, Any]:
    """One split in the decoded cache's format (adaptflow/data/cache.py)."""
    payload = {
        "images": images,
        "sha256": [f"toy{i}" for i in range(len(images))],
        "classes": CLASSES,
    }
    if labels is not None:
        payload["labels"] = labels
    return payload


def write_project(root: Path, scale: Scale) -> Path:
    """The cache splits the adapt and pretrain stages read, and a randomly initialised source
    model, under `root` (the stages resolve their paths against the working directory)."""
    size, count = scale.image_size, scale.images
    source, source_labels = toy_images(count, size, seed=1, shift=0.0)
    val, val_labels = toy_images(count // 4, size, seed=2, shift=0.0)
    target, _ = toy_images(count, size, seed=3, shift=0.25)
    save_torch(root / paths.SOURCE_TRAIN, _split(source, source_labels))
    save_torch(root / paths.SOURCE_VAL, _split(val, val_labels))
    save_torch(root / paths.TARGET_TRAIN, _split(target, None))
    seed_everything(0)
    save_classifier(root / paths.SOURCE_MODEL, Classifier(toy_spec(scale)))
    return root


def toy_spec(scale: Scale) -> ModelSpec:
    return ModelSpec(
        backbone=scale.backbone,
        classes=CLASSES,
        channels=3,
        image_size=scale.image_size,
        bottleneck_dim=64,
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )


def make_params(scale: Scale, stage: str, **training: Any) -> Params:
    """Params with `training` settings (epochs, loader, compile...) for `stage` (adapt or
    pretrain); bf16 autocast and channels_last are on whatever the device."""
    section = {
        "batch_size": scale.batch_size,
        "amp": "bf16",
        "channels_last": "on",
        "workers": scale.workers,
        "lr": 0.01,
        **training,
    }
    if stage == "adapt":
        section.setdefault("fallback_to_source", False)  # the adapted model is the trained one
    else:
        section.setdefault("backbone", scale.backbone)
    data = {"source": "src", "target": "tgt", "image_size": scale.image_size, "channels": 3}
    selection = {"validator": "info_max", "max_samples": 256}
    return parse_params({"data": data, stage: section, "selection": selection})


@contextlib.contextmanager
def working_directory(directory: Path) -> Iterator[Path]:
    previous = Path.cwd()
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(previous)


def adapt_in(project: Path, params: Params, device: torch.device) -> Adaptation:
    with working_directory(project):
        return adapt(params, device)


def pretrain_in(project: Path, params: Params, device: torch.device) -> SourceModel:
    with working_directory(project):
        return train_source_model(params, device)


def relative_difference(first: nn.Module, second: nn.Module) -> float:
    """‖a − b‖ / ‖b‖ over every floating-point tensor of two models' state (weights and
    BatchNorm statistics; not the integer step counters)."""
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    difference = reference = 0.0
    for name, value in a.items():
        other = b[name]
        if not value.is_floating_point():
            continue
        difference += float((value.double() - other.double()).pow(2).sum())
        reference += float(other.double().pow(2).sum())
    return (difference / max(reference, 1e-30)) ** 0.5


@contextlib.contextmanager
def recorded_convolutions() -> Iterator[list[tuple[torch.dtype, bool]]]:
    """(output dtype, input channels_last?) of every Conv2d call made in training mode."""
    records: list[tuple[torch.dtype, bool]] = []

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if isinstance(module, nn.Conv2d) and module.training:
            channels_last = inputs[0].is_contiguous(memory_format=torch.channels_last)
            records.append((output.dtype, channels_last))

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


def calls_counted(function: Callable, counter: list[int]) -> Callable:
    """`function`, counting its calls in `counter[0]`."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return function(*args, **kwargs)

    return counted
