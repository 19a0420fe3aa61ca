"""cdan: conditional adversarial adaptation with entropy conditioning, CDAN+E (Long et al., 2018).

Like DANN, but the discriminator sees features *conditioned on* the classifier's predictions
(their outer product), so it aligns class-conditional distributions rather than marginals;
confident samples weigh more (entropy conditioning).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from adaptflow.core.params import MAX_WIDTH, LossWeight, LrMultiplier, StrictModel, Width
from adaptflow.data.batch import Batch
from adaptflow.methods.adversarial import AdversarialMethod
from adaptflow.methods.base import StepOutput, register
from adaptflow.methods.layers import entropy


class CdanOptions(StrictModel):
    trade_off: LossWeight = 1.0
    lr_mult: LrMultiplier = (
        0.1  # adversarial training from a trained source model needs small steps
    )
    hidden: Width = 1024
    warmup: Annotated[float, Field(gt=0, le=1000)] = 10.0
    entropy_conditioning: bool = True
    max_map_dim: Annotated[int, Field(ge=16, le=MAX_WIDTH)] = (
        4096  # above: a randomized multilinear map
    )


class MultilinearMap(nn.Module):
    """features ⊗ predictions, flattened; randomised to `dim` outputs when the product is large."""

    def __init__(self, feature_dim: int, num_classes: int, max_dim: int) -> None:
        super().__init__()
        self.randomized = feature_dim * num_classes > max_dim
        self.out_features = max_dim if self.randomized else feature_dim * num_classes
        if self.randomized:  # fixed random projections, saved with the method's state
            self.register_buffer("feature_projection", torch.randn(feature_dim, max_dim))
            self.register_buffer("class_projection", torch.randn(num_classes, max_dim))

    def forward(self, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            mapped = (features @ self.feature_projection) * (probs @ self.class_projection)
            return mapped / math.sqrt(self.out_features)
        return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)


@register
class Cdan(AdversarialMethod):
    name = "cdan"
    Options = CdanOptions

    def __init__(self, model, training, options) -> None:
        spec = model.spec
        mapping = MultilinearMap(spec.bottleneck_dim, spec.num_classes, options.max_map_dim)
        super().__init__(model, training, options, mapping.out_features)
        self.map = mapping

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        features, logits, source_ce = self.source_and_target(source, target)
        probs = logits.softmax(1).detach()
        weights = None
        if self.options.entropy_conditioning:
            weights = 1.0 + torch.exp(-entropy(probs))
            weights = weights / weights.sum() * len(weights)
        return self.adversarial_step(
            source_ce, self.map(features, probs), len(source.images), weights
        )
