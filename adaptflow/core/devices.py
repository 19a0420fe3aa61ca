"""Choosing the device and seeding every RNG."""

from __future__ import annotations

import random

import numpy as np
import torch

from adaptflow.core.errors import AdaptflowError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AdaptflowError(f"device: {name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdaptflowError("device: cuda requested but no GPU is visible; use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise AdaptflowError(f"device: {name!r} is not supported; use auto, cpu or cuda")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: a function of (seed, epoch) only, so resumed runs replay it."""
    return (seed * 1_000_003 + epoch) % 2**63
