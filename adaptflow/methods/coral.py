"""coral: Deep CORAL (Sun & Saenko, ECCV-W 2016): match feature means and covariances.

The penalty is the squared difference of the two domains' bottleneck feature covariances (and
means, as in the Transfer-Learning-Library), added to the source cross-entropy.
"""

from __future__ import annotations

import torch

from adaptflow.core.params import LossWeight, StrictModel
from adaptflow.data.batch import Batch
from adaptflow.methods.base import Method, StepOutput, register


class CoralOptions(StrictModel):
    trade_off: LossWeight = 1.0


def coral_distance(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the feature means plus that of the covariance matrices."""
    mean_s, mean_t = source.mean(0, keepdim=True), target.mean(0, keepdim=True)
    centred_s, centred_t = source - mean_s, target - mean_t
    cov_s = centred_s.T @ centred_s / (len(source) - 1)
    cov_t = centred_t.T @ centred_t / (len(target) - 1)
    return (mean_s - mean_t).pow(2).mean() + (cov_s - cov_t).pow(2).mean()


@register
class Coral(Method):
    name = "coral"
    Options = CoralOptions

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        features, _, source_ce = self.source_and_target(source, target)
        count = len(source.images)
        distance = coral_distance(features[:count], features[count:])
        return StepOutput({"source_ce": source_ce, "coral": self.options.trade_off * distance})
