"""The classifier: input adapter -> backbone -> bottleneck -> linear head, and its checkpoints.

The model takes float images in [0, 1] at the cached geometry; normalisation (and grey-to-RGB
for pretrained RGB backbones) happens inside it, so training, evaluation and the exported ONNX
graph share one preprocessing. A checkpoint holds the weights with the `ModelSpec` that
rebuilds the model, and loads with `weights_only=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import REWRITE, load_torch, save_torch
from adaptflow.models.backbones import Backbone, build_backbone

CHECKPOINT_FORMAT = "adaptflow.classifier/1"


class ModelSpec(BaseModel):
    """Everything needed to rebuild a classifier and feed it: saved with every checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str
    classes: list[str]
    channels: int  # channels of the input images
    image_size: int
    bottleneck_dim: int
    mean: list[float]
    std: list[float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class InputAdapter(nn.Module):
    """Normalise [0, 1] images with the model's mean/std; grey to RGB if the backbone wants it."""

    def __init__(self, in_channels: int, model_channels: int, mean: list[float], std: list[float]):
        super().__init__()
        self.repeat = model_channels // in_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """input adapter -> backbone -> bottleneck (Linear-BN-ReLU) -> linear head."""

    def __init__(self, spec: ModelSpec, backbone: Backbone | None = None) -> None:
        super().__init__()
        backbone = backbone or build_backbone(spec.backbone, spec.channels)
        if len(spec.mean) != backbone.channels or len(spec.std) != backbone.channels:
            raise AdaptflowError(
                f"model spec: mean/std have {len(spec.mean)} values, backbone {spec.backbone} "
                f"takes {backbone.channels} channels"
            )
        self.spec = spec
        self.input = InputAdapter(spec.channels, backbone.channels, spec.mean, spec.std)
        self.backbone = backbone.module
        self.bottleneck = nn.Sequential(
            nn.Linear(backbone.feature_dim, spec.bottleneck_dim),
            nn.BatchNorm1d(spec.bottleneck_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(spec.bottleneck_dim, spec.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features: what alignment losses and label-free validators look at."""
        return self.bottleneck(self.backbone(self.input(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---- checkpoints ----


def save_classifier(path: Path, model: Classifier, info: dict[str, Any] | None = None) -> None:
    """Save weights, spec and info (a plain dict) atomically; loadable with weights_only=True."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "spec": model.spec.model_dump(),
            "state_dict": state,
            "info": info or {},
        },
    )


def load_classifier(path: Path, fix: str = REWRITE) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier from a `save_classifier` checkpoint; return it and its info.

    `fix`: what to do if the file is not one (default: rerun the stage that writes it).
    """
    payload = load_torch(path, fix=fix)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise AdaptflowError(f"{path}: not an adaptflow classifier checkpoint; {fix}")
    model = Classifier(ModelSpec(**payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    return model, payload["info"]
