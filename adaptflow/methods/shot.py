"""shot: source hypothesis transfer (Liang et al., ICML 2020), source-free.

Keeps the source classifier head (the "hypothesis") fixed and adapts the feature extractor on
unlabeled target images alone: information maximisation (confident, diverse predictions) plus
self-supervised pseudo-labels from class centroids in feature space, recomputed every epoch.
The stage never opens source data.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from adaptflow.core.params import LossWeight, StrictModel
from adaptflow.data.batch import Batch
from adaptflow.data.pools import ImagePool
from adaptflow.methods.base import Method, StepOutput, register
from adaptflow.methods.layers import entropy

BATCH = 256


class ShotOptions(StrictModel):
    pseudo_label_weight: LossWeight = 0.3  # beta; 0 gives SHOT-IM
    diversity_weight: LossWeight = 1.0
    refinements: Annotated[int, Field(ge=0, le=10)] = 1  # centroid/label refinement rounds


def information_maximization(logits: torch.Tensor, diversity_weight: float) -> torch.Tensor:
    """Mean prediction entropy minus (weighted) entropy of the mean prediction."""
    probs = logits.softmax(1)
    mean = probs.mean(0)
    return entropy(probs).mean() - diversity_weight * entropy(mean.unsqueeze(0))[0]


@torch.no_grad()
def centroid_pseudo_labels(
    features: torch.Tensor, probs: torch.Tensor, rounds: int
) -> torch.Tensor:
    """SHOT's labels: nearest (cosine) class centroid, centroids first weighted by predictions."""
    features = F.normalize(torch.cat([features, torch.ones(len(features), 1)], dim=1), dim=1)
    weights = probs
    present = probs.argmax(1).bincount(minlength=probs.shape[1]) > 0
    for _ in range(rounds + 1):
        centroids = F.normalize(weights.T @ features / (weights.sum(0)[:, None] + 1e-8), dim=1)
        similarity = features @ centroids.T
        similarity[:, ~present] = -2.0  # classes nobody predicts get no centroid
        labels = similarity.argmax(1)
        weights = F.one_hot(labels, probs.shape[1]).float()
    return labels


@register
class Shot(Method):
    name = "shot"
    Options = ShotOptions
    uses_source = False

    def __init__(self, model, training, options) -> None:
        super().__init__(model, training, options)
        model.head.requires_grad_(False)
        self.pseudo_labels: torch.Tensor | None = None

    def trainable_groups(self) -> list[dict]:
        groups = []
        for group in super().trainable_groups():
            params = [p for p in group["params"] if p.requires_grad]
            if params:
                groups.append({**group, "params": params})
        return groups

    def begin_epoch(self, epoch: int, target: ImagePool | None, device: torch.device) -> None:
        if self.options.pseudo_label_weight == 0:
            return
        self.model.eval()
        features, probs = [], []
        with torch.no_grad():
            for _, images, _ in target.batches(BATCH, device):
                feature = self.model.features(images)
                features.append(feature.float().cpu())
                probs.append(self.model.head(feature).float().softmax(1).cpu())
        labels = centroid_pseudo_labels(
            torch.cat(features), torch.cat(probs), self.options.refinements
        )
        self.pseudo_labels = labels.to(device)

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        logits = self.model(target.images)
        losses = {
            "information_maximization": information_maximization(
                logits, self.options.diversity_weight
            )
        }
        if self.pseudo_labels is not None:
            pseudo = self.pseudo_labels[target.index.to(self.pseudo_labels.device)]
            losses["pseudo_label_ce"] = self.options.pseudo_label_weight * F.cross_entropy(
                logits, pseudo
            )
        return StepOutput(losses)
