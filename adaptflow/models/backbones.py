"""Backbones: torchvision classifiers (`get_model`) or a small CNN, with their classifier removed.

Backbones are what the source model starts from: built with random weights here, or loaded with
published weights by adaptflow.models.pretrained. A size check refuses, before any training, an
image size a backbone cannot take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adaptflow.core.errors import AdaptflowError

SMALL_CNN = "small_cnn"


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks with pooling; enough for 28x28 digits, fast on two CPU cores."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        blocks, channels = [], in_channels
        for i, width in enumerate(widths):
            pool = nn.MaxPool2d(2) if i < len(widths) - 1 else nn.AdaptiveAvgPool2d(1)
            blocks.append(nn.Sequential(_conv_block(channels, width), pool))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.blocks(x), 1)


def torchvision_names() -> list[str]:
    """Classification backbones torchvision can build."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_backbone(name: str) -> None:
    """Raise a clear error for a backbone name neither adaptflow nor torchvision knows."""
    if name == SMALL_CNN:
        return
    names = torchvision_names()
    if name not in names:
        close = [n for n in names if n.startswith(name[:4])][:6]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise AdaptflowError(
            f"pretrain.backbone: unknown backbone {name!r}{hint}; use {SMALL_CNN} or a "
            "torchvision classification model name"
        )


def strip_classifier(model: nn.Module) -> nn.Linear:
    """Replace the last Linear layer (the ImageNet classifier) by Identity; return that layer."""
    last_name, last = None, None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = name, module
    if last is None:
        raise AdaptflowError(f"backbone {type(model).__name__} has no Linear classifier to replace")
    parent_name, _, child = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return last


@dataclass(frozen=True)
class Backbone:
    module: nn.Module
    feature_dim: int
    channels: int  # input channels the backbone expects
    head: nn.Module | None = None  # the pretrained classifier removed from it, if any


def build_backbone(name: str, in_channels: int) -> Backbone:
    """A backbone with random weights and no classifier."""
    if name == SMALL_CNN:
        module = SmallCNN(in_channels)
        return Backbone(module, module.out_features, in_channels)
    import torchvision

    check_backbone(name)
    model = torchvision.models.get_model(name, weights=None)
    return Backbone(model, strip_classifier(model).in_features, 3)


def native_size(name: str) -> int | None:
    """The square input size a torchvision backbone's published weights were trained at."""
    weights = official_weights(name)
    crop = getattr(weights.transforms(), "crop_size", None) if weights is not None else None
    return int(crop[0]) if crop else None


def check_input_size(backbone: Backbone, name: str, image_size: int) -> None:
    """Refuse an image size the backbone cannot take (a ViT takes only its own; deep CNNs
    shrink small images to nothing), naming the param and the size to use instead."""
    module = backbone.module
    was_training = module.training
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, backbone.channels, image_size, image_size))
    except (RuntimeError, AssertionError, ValueError) as error:
        native = native_size(name)
        hint = f"; its pretrained weights expect {native}px" if native else ""
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AdaptflowError(
            f"data.image_size={image_size} does not fit backbone {name} ({first}){hint}; "
            "set data.image_size to a size it takes"
        ) from None
    finally:
        module.train(was_training)


def official_weights(name: str) -> Any:
    """torchvision's default published weights for a backbone, or None when it has none."""
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        return None
