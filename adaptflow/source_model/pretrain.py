"""The source model (`pretrain` stage): a backbone trained on the labeled source domain.

`pretrain.mode: train` starts from random weights; `torchvision` starts from a published
ImageNet backbone read from a local, hash-checked file. Either way the model is then trained
on the source train split by the shared loop, and the epoch with the best accuracy on the
source validation split is kept (source labels only; the target is not read at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import read_json
from adaptflow.core.params import AUTO_BACKBONE, CandidateParams, Params
from adaptflow.data.pools import ImagePool, load_pool
from adaptflow.methods.finetune import Finetune, FinetuneOptions
from adaptflow.models.backbones import (
    SMALL_CNN,
    Backbone,
    build_backbone,
    check_input_size,
    native_size,
)
from adaptflow.models.classifier import Classifier, ModelSpec
from adaptflow.models.pretrained import load_pretrained_backbone, pretrained_normalization
from adaptflow.source_model.candidates import candidate_start
from adaptflow.training.engine import FitResult, TrainingData
from adaptflow.training.job import TrainingJob, train_and_select

log = logging.getLogger(__name__)
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


def ranked_candidate() -> CandidateParams:
    """The candidate the rank stage put first (for `pretrain.backbone: auto`)."""
    record = read_json(paths.RANK_CHOICE)
    if not record.get("enabled"):
        raise AdaptflowError(
            f"pretrain.backbone: auto, but {paths.RANK_CHOICE} holds no choice; "
            "set rank.enabled: true and rerun (dvc repro)"
        )
    return CandidateParams(**record["candidate"])


def _backbone(
    params: Params, source_train: ImagePool, candidate: CandidateParams | None
) -> tuple[str, Backbone, list, list]:
    """The backbone's name, its (initial) module and input normalization."""
    p, channels = params.pretrain, params.data.channels
    if candidate is not None or p.backbone == AUTO_BACKBONE:
        start = candidate_start(candidate or ranked_candidate(), channels)
        return start.backbone_name, start.backbone, start.mean, start.std
    if p.mode == "torchvision":
        backbone = load_pretrained_backbone(p.backbone, p.weights_file, p.weights_sha256)
        mean, std = pretrained_normalization(p.backbone)
        return p.backbone, backbone, mean, std
    backbone = build_backbone(p.backbone, channels)
    mean, std = channel_stats(source_train, backbone.channels)
    return p.backbone, backbone, mean, std


def train_source_model(
    params: Params,
    device: torch.device,
    live: Any = None,
    candidate: CandidateParams | None = None,
) -> SourceModel | None:
    """Build the backbone, train it on the source, keep the best epoch by source-val accuracy.

    `candidate` starts from that candidate's weights (what `pretrain.backbone: auto` does with
    the rank stage's choice). In a data-parallel run only rank 0 gets the result.
    """
    source_train = load_pool(paths.SOURCE_TRAIN, "source train", labeled=True)
    source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    p = params.pretrain
    job = TrainingJob(
        stage="pretrain",
        training=p,
        build_method=partial(_source_method, params, source_train, candidate),
        data=TrainingData(source=source_train, target=None),
        validators=[SELECTED_BY],
        source_val=source_val,
        max_samples=len(source_val),
        inputs=(
            paths.SOURCE_TRAIN,
            paths.SOURCE_VAL,
            candidate,
            *([paths.RANK_CHOICE] if p.backbone == AUTO_BACKBONE else []),
        ),
    )
    trained = train_and_select(job, params, device, live)
    if trained is None:
        return None
    best = trained.fit.best[SELECTED_BY]
    epoch = int(best["epoch"])
    return SourceModel(trained.snapshots[epoch], trained.fit, epoch, float(best["score"]))


def _source_method(
    params: Params, source_train: ImagePool, candidate: CandidateParams | None
) -> Finetune:
    """Supervised training of a classifier on the configured (or candidate's) backbone."""
    p = params.pretrain
    backbone_name, backbone, mean, std = _backbone(params, source_train, candidate)
    check_input_size(backbone, backbone_name, params.data.image_size)
    native = native_size(backbone_name) if backbone.head is not None else None
    if native and native != params.data.image_size:
        log.warning(
            "%s was pretrained on %dpx images; data.image_size=%d works, but its features "
            "transfer best near %dpx",
            backbone_name, native, params.data.image_size, native,
        )  # fmt: skip
    spec = ModelSpec(
        backbone=backbone_name,
        classes=source_train.classes,
        channels=params.data.channels,
        image_size=params.data.image_size,
        bottleneck_dim=p.bottleneck_dim,
        mean=mean,
        std=std,
    )
    options = FinetuneOptions(label_smoothing=p.label_smoothing)
    return Finetune(Classifier(spec, backbone), p, options)


def describe_backbone(params: Params) -> str:
    """How the source model starts, for reports."""
    p = params.pretrain
    if p.backbone == AUTO_BACKBONE:
        candidate = ranked_candidate()
        origin = candidate.backbone or candidate.checkpoint
        return f"{origin} (candidate {candidate.name}, the rank stage's choice)"
    if p.mode == "torchvision":
        return f"{p.backbone} (torchvision ImageNet weights)"
    return f"{p.backbone} (random init)" if p.backbone != SMALL_CNN else "small CNN (random init)"
