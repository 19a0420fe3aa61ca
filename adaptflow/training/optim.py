"""The optimizer and learning-rate schedule over a method's parameter groups."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from adaptflow.core.params import TrainingParams


def build_optimizer(
    groups: list[dict], params: TrainingParams, device: torch.device
) -> torch.optim.Optimizer | None:
    """SGD (Nesterov) or AdamW over the method's groups; fused kernels on CUDA."""
    groups = [g for g in groups if any(p.requires_grad for p in g["params"])]
    if not groups:
        return None
    fused = device.type == "cuda"
    if params.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=params.lr, weight_decay=params.weight_decay, fused=fused
        )
    return torch.optim.SGD(
        groups,
        lr=params.lr,
        momentum=params.momentum,
        weight_decay=params.weight_decay,
        nesterov=params.momentum > 0,
        fused=fused,
    )


def _lr_factor(kind: str, total_updates: int) -> Callable[[int], float]:
    total = max(1, total_updates)
    if kind == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if kind == "inv":  # the annealing of DANN (Ganin & Lempitsky, 2015)
        return lambda step: (1 + 10 * min(step, total) / total) ** -0.75
    return lambda step: 1.0


def build_schedule(
    optimizer: torch.optim.Optimizer | None, kind: str, total_updates: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """`schedule` (constant, cosine or inv) over `total_updates` optimizer steps."""
    if optimizer is None:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(kind, total_updates))
