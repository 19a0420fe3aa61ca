"""fixmatch: confidence-thresholded pseudo-labels with weak/strong views (Sohn et al., 2020).

For each target image, the prediction on a weakly augmented view becomes a pseudo-label when
its confidence passes a threshold; the model is trained to predict it on a strongly augmented
view of the same image, alongside the source cross-entropy.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from adaptflow.core.params import LossWeight, StrictModel
from adaptflow.data.augment import StrongAugment
from adaptflow.data.batch import Batch
from adaptflow.methods.base import Method, StepOutput, register


class FixMatchOptions(StrictModel):
    trade_off: LossWeight = 1.0
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.95
    strength: Annotated[float, Field(ge=1, le=100)] = 2.5  # strong affine = weak affine * strength
    cutout: Annotated[float, Field(ge=0, lt=1)] = 0.3  # side of the cut-out square / image side


@register
class FixMatch(Method):
    name = "fixmatch"
    Options = FixMatchOptions

    def __init__(self, model, training, options) -> None:
        super().__init__(model, training, options)
        self.strong = StrongAugment(training.augment, options.strength, options.cutout)

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        with torch.no_grad():
            confidence, pseudo_labels = self.model(target.images).softmax(1).max(1)
        mask = (confidence >= self.options.threshold).float()
        strong = self.strong(target.raw, target.rows)
        logits = self.model(torch.cat([source.images, strong]))
        count = len(source.images)
        source_ce = F.cross_entropy(logits[:count], source.labels)
        unlabeled = F.cross_entropy(logits[count:], pseudo_labels, reduction="none")
        return StepOutput(
            {
                "source_ce": source_ce,
                "pseudo_label_ce": self.options.trade_off * (unlabeled * mask).mean(),
            },
            {"pseudo_label_rate": mask.mean()},
        )
