"""dan: deep adaptation network (Long et al., ICML 2015): multi-kernel MMD between domains.

The maximum mean discrepancy between source and target bottleneck features, under a sum of
Gaussian kernels whose bandwidths are multiples of the batch's mean squared distance.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from adaptflow.core.params import LossWeight, StrictModel
from adaptflow.data.batch import Batch
from adaptflow.methods.base import Method, StepOutput, register


class DanOptions(StrictModel):
    trade_off: LossWeight = 1.0
    bandwidths: list[Annotated[float, Field(gt=0, le=1000)]] = [0.125, 0.25, 0.5, 1.0, 2.0]


def mk_mmd(source: torch.Tensor, target: torch.Tensor, bandwidths: list[float]) -> torch.Tensor:
    """Biased quadratic-time MK-MMD² estimate with Gaussian kernels."""
    points = torch.cat([source, target]).float()
    squared = torch.cdist(points, points).pow(2)
    scale = squared.detach().mean()
    kernel = sum(torch.exp(-squared / (2 * b * scale)) for b in bandwidths)
    n = len(source)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


@register
class Dan(Method):
    name = "dan"
    Options = DanOptions

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        features, _, source_ce = self.source_and_target(source, target)
        count = len(source.images)
        mmd = mk_mmd(features[:count], features[count:], self.options.bandwidths)
        return StepOutput({"source_ce": source_ce, "mk_mmd": self.options.trade_off * mmd})
