"""Building blocks several methods share: entropy, gradient reversal, a domain discriminator."""

from __future__ import annotations

import math

import torch
from torch import nn


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Per-sample Shannon entropy of rows of probabilities."""
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim=1)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by -coefficient backward (Ganin & Lempitsky)."""
    return _ReverseGradient.apply(x, coefficient)


def warm_start(progress: float, alpha: float = 10.0) -> float:
    """DANN's schedule for the reversal coefficient: 0 at the start, approaching 1."""
    return 2.0 / (1.0 + math.exp(-alpha * progress)) - 1.0


class DomainDiscriminator(nn.Sequential):
    """MLP from features to one logit: source (1) or target (0)."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )


def domain_loss(
    discriminator: nn.Module,
    features: torch.Tensor,
    source_count: int,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of the discriminator (source = 1, target = 0), and its accuracy."""
    logits = discriminator(features).squeeze(1)
    labels = torch.zeros_like(logits)
    labels[:source_count] = 1.0
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, weight=weights)
    accuracy = ((logits > 0).float() == labels).float().mean()
    return loss, accuracy.detach()
