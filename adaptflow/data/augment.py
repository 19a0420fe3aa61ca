"""Per-image augmentation of whole batches on the training device.

torchvision.transforms.v2 draws one set of random parameters per call, so a batched tensor
gets the same crop for every image; here each image gets its own affine transform in a single
`affine_grid`/`grid_sample`, which keeps augmentation on the GPU and off the data path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adaptflow.params import AugmentParams


def _uniform(n: int, magnitude: float, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, device=device) * 2 - 1) * magnitude


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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return images
        n, device = images.shape[0], images.device
        angle = _uniform(n, self.rotate, device)
        zoom = 1.0 + _uniform(n, self.scale, device)
        shift = torch.stack([_uniform(n, 2 * self.translate, device) for _ in range(2)], dim=1)
        flip = torch.ones(n, device=device)
        if self.hflip:
            flip = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = self.affine(images)
        n, device = images.shape[0], images.device
        view = (n, 1, 1, 1)
        contrast = (1.0 + _uniform(n, self.jitter, device)).view(view)
        brightness = _uniform(n, self.jitter / 2, device).view(view)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * contrast + mean + brightness).clamp(0, 1)
        if self.cutout <= 0:
            return images
        height, width = images.shape[-2:]
        half = max(1, int(self.cutout * height) // 2)
        centre_y = torch.randint(0, height, (n, 1, 1), device=device)
        centre_x = torch.randint(0, width, (n, 1, 1), device=device)
        rows = torch.arange(height, device=device).view(1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)
        square = ((rows - centre_y).abs() < half) & ((cols - centre_x).abs() < half)
        return images.masked_fill(square.unsqueeze(1), 0.0)
