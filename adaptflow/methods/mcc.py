"""mcc: minimum class confusion (Jin et al., ECCV 2020).

Penalises how often target predictions confuse pairs of classes: the off-diagonal mass of a
class-correlation matrix of temperature-scaled, certainty-weighted target predictions.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from adaptflow.core.params import LossWeight, StrictModel
from adaptflow.data.batch import Batch
from adaptflow.methods.base import Method, StepOutput, register
from adaptflow.methods.layers import entropy


class MccOptions(StrictModel):
    trade_off: LossWeight = 1.0
    temperature: Annotated[float, Field(gt=0, le=100)] = 2.5


def class_confusion(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """MCC's loss on a batch of target logits."""
    count, classes = logits.shape
    probs = (logits / temperature).softmax(1)
    weights = 1.0 + torch.exp(-entropy(probs).detach())
    weights = (count * weights / weights.sum()).unsqueeze(1)
    confusion = (probs * weights).T @ probs
    confusion = confusion / confusion.sum(dim=1, keepdim=True)
    return (confusion.sum() - confusion.trace()) / classes


@register
class Mcc(Method):
    name = "mcc"
    Options = MccOptions

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        _, logits, source_ce = self.source_and_target(source, target)
        confusion = class_confusion(logits[len(source.images) :], self.options.temperature)
        return StepOutput(
            {"source_ce": source_ce, "class_confusion": self.options.trade_off * confusion}
        )
