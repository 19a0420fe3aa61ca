"""Per-image augmentation of whole batches on the training device.

torchvision.transforms.v2 draws one set of random parameters per call, so a batched tensor
gets the same crop for every image; here each image gets its own affine transform in a single
`affine_grid`/`grid_sample`, which keeps augmentation on the GPU and off the data path.

Under data-parallel training a process holds some rows of a global batch (`Rows`). Random
parameters are drawn for the whole global batch, from an RNG every process seeds alike, and
each process keeps its rows: image i of the global batch gets the same transform whatever
the number of processes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adaptflow.core.params import AugmentParams
from adaptflow.data.batch import Rows


def _uniform(rows: Rows, magnitude: float, device: torch.device) -> torch.Tensor:
    return rows.of((torch.rand(rows.total, device=device) * 2 - 1) * magnitude)


class RandomAffine(nn.Module):
    """Random rotation, scale, translation and optional horizontal flip, per image."""

    def __init__(self, params: AugmentParams, strength: float = 1.0) -> None:
        super().__init__()
        self.rotate = math.radians(params.rotate) * strength
        self.scale = min(params.scale * strength, 0.9)
        self.translate = params.translate * strength
        self.hflip = params.hflip

    @property
    def is_identity(self) -> bool:
        return not (self.rotate or self.scale or self.translate or self.hflip)

    def forward(self, images: torch.Tensor, rows: Rows | None = None) -> torch.Tensor:
        if self.is_identity:
            return images
        n, device = images.shape[0], images.device
        rows = rows or Rows.whole(n)
        angle = _uniform(rows, self.rotate, device)
        zoom = 1.0 + _uniform(rows, self.scale, device)
        shift = torch.stack([_uniform(rows, 2 * self.translate, device) for _ in range(2)], dim=1)
        flip = torch.ones(n, device=device)
        if self.hflip:
            flip = torch.where(rows.of(torch.rand(rows.total, device=device)) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
                torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )


class StrongAugment(nn.Module):
    """A stronger, per-image perturbation for consistency methods (FixMatch's "strong" view):
    a larger random affine, brightness and contrast jitter, and a cut-out square."""

    def __init__(self, params: AugmentParams, strength: float, cutout: float) -> None:
        super().__init__()
        self.affine = RandomAffine(params, strength=strength)
        self.jitter = min(0.5 * strength / 2.5, 0.9)
        self.cutout = cutout

    def forward(self, images: torch.Tensor, rows: Rows | None = None) -> torch.Tensor:
        n, device = images.shape[0], images.device
        rows = rows or Rows.whole(n)
        images = self.affine(images, rows)
        view = (n, 1, 1, 1)
        contrast = (1.0 + _uniform(rows, self.jitter, device)).view(view)
        brightness = _uniform(rows, self.jitter / 2, device).view(view)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * contrast + mean + brightness).clamp(0, 1)
        if self.cutout <= 0:
            return images
        height, width = images.shape[-2:]
        half = max(1, int(self.cutout * height) // 2)
        centre_y = rows.of(torch.randint(0, height, (rows.total, 1, 1), device=device))
        centre_x = rows.of(torch.randint(0, width, (rows.total, 1, 1), device=device))
        rows = torch.arange(height, device=device).view(1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)
        square = ((rows - centre_y).abs() < half) & ((cols - centre_x).abs() < half)
        return images.masked_fill(square.unsqueeze(1), 0.0)
