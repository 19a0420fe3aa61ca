"""Candidate source models: where `rank` scores them and `pretrain.backbone: auto` starts.

A candidate is a torchvision model with its published weights (a local, hash-checked file) or
a classifier an earlier adaptflow run wrote (`models/source.pt` of another experiment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import sha256_file
from adaptflow.core.params import CandidateParams
from adaptflow.core.paths import contained
from adaptflow.models.backbones import Backbone
from adaptflow.models.classifier import load_classifier
from adaptflow.models.pretrained import load_pretrained_backbone, pretrained_normalization

CHECKPOINT_HINT = "point it at a models/source.pt an adaptflow run wrote"


@dataclass
class Start:
    """What a candidate gives the source model: backbone weights, input normalization, head."""

    backbone_name: str
    backbone: Backbone
    mean: list[float]
    std: list[float]
    head: nn.Module  # the candidate's own classifier on top of the backbone (for LEEP/NCE)


def _param(candidate: CandidateParams) -> str:
    return f"rank.candidates.{candidate.name}"


def candidate_start(candidate: CandidateParams, channels: int) -> Start:
    """Load a candidate's weights (hash-checked or from an adaptflow checkpoint)."""
    if candidate.backbone is not None:
        backbone = load_pretrained_backbone(
            candidate.backbone, candidate.weights_file, candidate.weights_sha256, _param(candidate)
        )
        mean, std = pretrained_normalization(candidate.backbone)
        return Start(candidate.backbone, backbone, mean, std, backbone.head)
    path = _checkpoint_path(candidate)
    model, _ = load_classifier(path, fix=f"{_param(candidate)}.checkpoint: {CHECKPOINT_HINT}")
    if model.spec.channels != channels:
        raise AdaptflowError(
            f"{_param(candidate)}.checkpoint: {path} takes {model.spec.channels}-channel images, "
            f"data.channels is {channels}"
        )
    feature_dim = model.bottleneck[0].in_features
    backbone = Backbone(model.backbone, feature_dim, len(model.spec.mean))
    head = nn.Sequential(model.bottleneck, model.head)
    return Start(model.spec.backbone, backbone, model.spec.mean, model.spec.std, head)


def weights_identity(candidate: CandidateParams) -> str:
    """What pins a candidate's weights without loading them: a checkpoint's sha256, or "" for
    torchvision weights, whose hash check ties their contents to the candidate's params."""
    return "" if candidate.backbone is not None else sha256_file(_checkpoint_path(candidate))


def _checkpoint_path(candidate: CandidateParams) -> Path:
    path = contained(candidate.checkpoint, f"{_param(candidate)}.checkpoint", [Path.cwd()])
    if not path.is_file():
        raise AdaptflowError(
            f"{_param(candidate)}.checkpoint: no file at {path}; {CHECKPOINT_HINT}"
        )
    return path
