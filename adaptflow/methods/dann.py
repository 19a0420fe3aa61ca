"""dann: domain-adversarial training (Ganin & Lempitsky, ICML 2015).

A discriminator learns to tell source from target bottleneck features; a gradient reversal
layer makes the feature extractor fool it, so the features stop encoding the domain. The
reversal coefficient warms up from 0 to 1 over training.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from adaptflow.core.params import LossWeight, LrMultiplier, StrictModel, Width
from adaptflow.data.batch import Batch
from adaptflow.methods.adversarial import AdversarialMethod
from adaptflow.methods.base import StepOutput, register


class DannOptions(StrictModel):
    trade_off: LossWeight = 1.0  # weight of the adversarial loss
    # adversarial training from a trained source model needs small steps
    lr_mult: LrMultiplier = 0.1
    hidden: Width = 1024  # discriminator width
    warmup: Annotated[float, Field(gt=0, le=1000)] = 10.0  # steepness of the reversal warm-up


@register
class Dann(AdversarialMethod):
    name = "dann"
    Options = DannOptions

    def __init__(self, model, training, options) -> None:
        super().__init__(model, training, options, model.spec.bottleneck_dim)

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        features, _, source_ce = self.source_and_target(source, target)
        return self.adversarial_step(source_ce, features, len(source.images))
