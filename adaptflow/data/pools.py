"""Decoded splits in memory (or memory-mapped), and batches drawn from them on the device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import load_torch


@dataclass
class ImagePool:
    """One split: uint8 images (N, C, H, W), labels when the split may have them."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device) -> ImagePool:
        """The pool with its tensors moved to `device` (once, before training)."""
        labels = None if self.labels is None else self.labels.to(device)
        return ImagePool(self.name, self.images.to(device), labels, self.classes)

    def batches(
        self, batch_size: int, device: torch.device, limit: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(index, images, labels) over the pool (or its first `limit` images), in order."""
        count = len(self) if limit <= 0 else min(limit, len(self))
        for start in range(0, count, batch_size):
            index = torch.arange(start, min(start + batch_size, count))
            yield (index, *self.gather(index, device))

    def gather(
        self, index: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images of `index` as float in [0, 1] on `device`, with their labels if any."""
        index = index.to(self.images.device)
        images = self.images.index_select(0, index)
        labels = None if self.labels is None else self.labels.index_select(0, index)
        images, labels = (_to_device(t, device) for t in (images, labels))
        return images.float().div_(255.0), labels


def _to_device(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """Copy to `device` (a no-op where it already is); from the CPU to a GPU through pinned
    memory, without blocking. A pool already on the GPU (loader `device`) is never pinned: its
    tensors sit on cuda:0 while `device` may be plain cuda, which compares unequal to it."""
    if tensor is None:
        return None
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def load_pool(path: Path, name: str, labeled: bool, mmap: bool = True) -> ImagePool:
    """Load one cache split; an unlabeled split must not carry labels."""
    payload = load_torch(path, mmap=mmap)
    labels = payload.get("labels")
    if labeled and labels is None:
        raise AdaptflowError(f"{path}: has no labels; rerun the prepare stage")
    if not labeled and labels is not None:
        raise AdaptflowError(f"{path}: unexpectedly holds labels; rerun the prepare stage")
    return ImagePool(name, payload["images"], labels, list(payload["classes"]))
