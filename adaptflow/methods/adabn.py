"""adabn: re-estimate every BatchNorm layer's statistics on the target (Li et al., 2016).

No weight changes: one pass over the unlabeled target pool replaces each BatchNorm layer's
running mean and variance by the target's, which removes much of a low-level domain shift.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptflow.data.pools import ImagePool
from adaptflow.methods.base import Method, register

BATCH = 256


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, pool: ImagePool, device: torch.device) -> None:
    """Set each BatchNorm layer's running statistics to their average over `pool`'s batches."""
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over all batches of the pass
    was_training = model.training
    model.train()
    for _, images, _ in pool.batches(BATCH, device):
        model(images)
    model.train(was_training)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum


@register
class AdaBN(Method):
    name = "adabn"
    uses_source = False
    takes_steps = False

    def epochs(self, configured: int) -> int:
        return 1

    def trainable_groups(self) -> list[dict]:
        return []

    def begin_epoch(self, epoch: int, target: ImagePool | None, device: torch.device) -> None:
        recalibrate_batchnorm(self.model, target, device)
