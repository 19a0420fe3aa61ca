"""Pretrained weights: a local file or the torch hub cache, verified by hash; never downloaded."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import torch

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import load_torch, sha256_file, special_file_kind
from adaptflow.core.paths import contained
from adaptflow.models.backbones import Backbone, official_weights, strip_classifier


def pretrained_normalization(name: str) -> tuple[list[float], list[float]]:
    """The mean/std a pretrained torchvision backbone was trained with (ImageNet's by default)."""
    weights = official_weights(name)
    transform = weights.transforms() if weights is not None else None
    mean = list(getattr(transform, "mean", (0.485, 0.456, 0.406)))
    std = list(getattr(transform, "std", (0.229, 0.224, 0.225)))
    return mean, std


def resolve_weights_file(
    name: str, weights_file: str | None, sha256: str | None, param: str = "pretrain"
) -> Path:
    """Find the weights for `name` locally and check their hash; raise a clear error otherwise.

    `param` is the params.yaml section the file and hash come from, for error messages.
    """
    weights = official_weights(name)
    official_name = Path(urlparse(weights.url).path).name if weights is not None else None
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if weights_file:
        path = contained(weights_file, f"{param}.weights_file", [Path.cwd(), hub])
    elif official_name:
        path = hub / official_name
    else:
        raise AdaptflowError(
            f"{param}.weights_file: {name} has no published torchvision weights; "
            f"set {param}.weights_file and {param}.weights_sha256"
        )
    if not path.is_file() and special_file_kind(path) is None:  # a FIFO: refused by the hash
        where = f" (published at {weights.url})" if weights is not None else ""
        raise AdaptflowError(
            f"{param}.weights_file: no weights for {name} at {path}, and nothing is downloaded; "
            f"copy the file{where} there or set {param}.weights_file"
        )
    expected = sha256
    if expected is None and official_name:
        match = re.search(r"-([0-9a-f]{6,})\.", official_name)
        expected = match.group(1) if match else None
    if expected is None:
        raise AdaptflowError(
            f"{param}.weights_sha256: needed to verify {path}; set it to the file's sha256"
        )
    actual = sha256_file(path)
    if not actual.startswith(expected.lower()):
        raise AdaptflowError(
            f"{param}.weights_file: {path} has sha256 {actual[:16]}..., expected "
            f"{expected[:16]}...; the file is corrupt or not the weights for {name}"
        )
    return path


def load_pretrained_backbone(
    name: str, weights_file: str | None, sha256: str | None, param: str = "pretrain"
) -> Backbone:
    """A torchvision backbone with verified pretrained weights; its classifier becomes `head`."""
    import torchvision

    path = resolve_weights_file(name, weights_file, sha256, param)
    model = torchvision.models.get_model(name, weights=None)
    state = load_torch(
        path,
        fix=f"{param}.weights_file should be a state_dict of {name} saved with torch.save "
        "(as torchvision publishes them), not a whole pickled model or another format",
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise AdaptflowError(f"{param}.weights_file: {path} does not fit {name}: {first}") from None
    head = strip_classifier(model)
    return Backbone(model, head.in_features, 3, head)
