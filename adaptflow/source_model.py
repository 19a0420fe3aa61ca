"""The source model (`pretrain` stage): a backbone trained on the labeled source domain.

`pretrain.mode: train` starts from random weights; `torchvision` starts from a published
ImageNet backbone read from a local, hash-checked file. Either way the model is then trained
on the source train split by the shared loop, and the epoch with the best accuracy on the
source validation split is kept (source labels only; the target is not read at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from adaptflow import paths
from adaptflow.data.pools import ImagePool, load_pool
from adaptflow.devices import seed_everything
from adaptflow.engine import CheckpointStore, FitResult, TrainingData, fit
from adaptflow.io import fingerprint, load_torch
from adaptflow.methods.finetune import Finetune, FinetuneOptions
from adaptflow.models import (
    SMALL_CNN,
    Backbone,
    Classifier,
    ModelSpec,
    build_backbone,
    load_pretrained_backbone,
    pretrained_normalization,
)
from adaptflow.params import Params
from adaptflow.selection import Selector

SELECTED_BY = "source_accuracy"


@dataclass
class SourceModel:
    model: Classifier
    fit: FitResult
    selected_epoch: int
    source_val_accuracy: float


def channel_stats(pool: ImagePool, channels: int, limit: int = 10_000) -> tuple[list, list]:
    """Per-channel mean and std of (up to `limit`) images, in [0, 1] units."""
    images = pool.images[:limit].float().div(255.0)
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    repeat = channels // images.shape[1]
    return mean.repeat(repeat).tolist(), std.repeat(repeat).tolist()


def _backbone(params: Params, source_train: ImagePool) -> tuple[Backbone, list, list]:
    p, channels = params.pretrain, params.data.channels
    if p.mode == "torchvision":
        backbone = load_pretrained_backbone(p.backbone, p.weights_file, p.weights_sha256)
        mean, std = pretrained_normalization(p.backbone)
        return backbone, mean, std
    backbone = build_backbone(p.backbone, channels)
    mean, std = channel_stats(source_train, backbone.channels)
    return backbone, mean, std


def train_source_model(params: Params, device: torch.device, live: Any = None) -> SourceModel:
    """Build the backbone, train it on the source, keep the best epoch by source-val accuracy."""
    source_train = load_pool(paths.SOURCE_TRAIN, "source train", labeled=True)
    source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    p = params.pretrain
    seed_everything(params.seed)  # the model's initial weights
    backbone, mean, std = _backbone(params, source_train)
    spec = ModelSpec(
        backbone=p.backbone,
        classes=source_train.classes,
        channels=params.data.channels,
        image_size=params.data.image_size,
        bottleneck_dim=p.bottleneck_dim,
        mean=mean,
        std=std,
    )
    model = Classifier(spec, backbone)
    method = Finetune(model, p, FinetuneOptions(label_smoothing=p.label_smoothing))
    store = CheckpointStore(
        paths.CHECKPOINTS / "pretrain",
        fingerprint(p, params.seed, device.type, paths.SOURCE_TRAIN, paths.SOURCE_VAL),
    )
    selector = Selector([SELECTED_BY], source_val, None, device, 256, len(source_val))
    result = fit(
        method,
        TrainingData(source=source_train, target=None),
        p,
        stage="pretrain",
        seed=params.seed,
        device=device,
        selector=selector,
        store=store,
        live=live,
    )
    best = result.best[SELECTED_BY]
    model.load_state_dict(load_torch(result.candidates[best["epoch"]]))
    store.clear()
    return SourceModel(model.cpu(), result, int(best["epoch"]), float(best["score"]))


def describe_backbone(params: Params) -> str:
    """How the source model starts, for reports."""
    p = params.pretrain
    if p.mode == "torchvision":
        return f"{p.backbone} (torchvision ImageNet weights)"
    return f"{p.backbone} (random init)" if p.backbone != SMALL_CNN else "small CNN (random init)"
