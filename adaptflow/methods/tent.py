"""tent: test-time entropy minimisation on BatchNorm affine parameters (Wang et al., ICLR 2021).

Only the scale and shift of BatchNorm layers train, to make target predictions confident,
with batch statistics from target data; everything else stays as the source model had it.
Source-free. `adapt_on_batch` applies the same update at inference, batch by batch.
"""

from __future__ import annotations

import torch

from adaptflow.core.params import LrMultiplier, StrictModel
from adaptflow.data.batch import Batch
from adaptflow.methods.adabn import batchnorm_layers
from adaptflow.methods.base import Method, StepOutput, register
from adaptflow.methods.layers import entropy
from adaptflow.models.classifier import Classifier


class TentOptions(StrictModel):
    lr_mult: LrMultiplier = 5.0  # few parameters: larger steps than adapt.lr


def batchnorm_affine_parameters(model: Classifier) -> list[torch.nn.Parameter]:
    return [
        p for layer in batchnorm_layers(model) for p in (layer.weight, layer.bias) if p is not None
    ]


def entropy_loss(model: Classifier, images: torch.Tensor) -> torch.Tensor:
    return entropy(model(images).softmax(1)).mean()


def adapt_on_batch(
    model: Classifier, images: torch.Tensor, optimizer: torch.optim.Optimizer
) -> torch.Tensor:
    """One TENT update on an inference batch; returns the logits after the update."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    entropy_loss(model, images).backward()
    optimizer.step()
    with torch.no_grad():
        return model(images)


@register
class Tent(Method):
    name = "tent"
    Options = TentOptions
    uses_source = False

    def __init__(self, model, training, options) -> None:
        super().__init__(model, training, options)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self._affine = batchnorm_affine_parameters(model)
        for parameter in self._affine:
            parameter.requires_grad_(True)

    def trainable_groups(self) -> list[dict]:
        return [{"params": self._affine, "lr": self.lr, "name": "batchnorm_affine"}]

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        return StepOutput({"target_entropy": entropy_loss(self.model, target.raw)})
