"""A model's outputs over a pool of images: logits and bottleneck features, in eval mode.

What every reader of predictions shares: the per-epoch validators, the cross-method rules, the
warnings, evaluation and the rank stage's feature extraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier


@dataclass
class Outputs:
    """Logits and bottleneck features of one pool, with labels where the pool has them."""

    logits: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor | None


@torch.no_grad()
def predict(
    model: Classifier,
    pool: ImagePool,
    device: torch.device,
    batch_size: int,
    limit: int = 0,
    autocast: bool = False,
) -> Outputs:
    """Outputs on (the first `limit` images of) a pool, in eval mode, as float32 on the CPU."""
    was_training = model.training
    model.eval()
    logits, features, labels = [], [], []
    for _, images, batch_labels in pool.batches(batch_size, device, limit):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            feature = model.features(images)
            logit = model.head(feature)
        logits.append(logit.float().cpu())
        features.append(feature.float().cpu())
        if batch_labels is not None:
            labels.append(batch_labels.cpu())
    model.train(was_training)
    return Outputs(torch.cat(logits), torch.cat(features), torch.cat(labels) if labels else None)
