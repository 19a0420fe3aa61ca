"""Backbones (torchvision `get_model` or a small CNN) with a bottleneck and a classifier head.

The model takes float images in [0, 1] at the cached geometry; normalisation (and grey-to-RGB
for pretrained RGB backbones) happens inside it, so training, evaluation and the exported ONNX
graph share one preprocessing. Backbone blocks are listed input-first, which is what freezing
("feature extraction") and per-block learning rates work on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from adaptflow.errors import AdaptflowError
from adaptflow.io import REWRITE, load_torch, save_torch, sha256_file
from adaptflow.params import LayerParams
from adaptflow.paths import contained

SMALL_CNN = "small_cnn"
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


def _strip_classifier(model: nn.Module) -> nn.Linear:
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
    return Backbone(model, _strip_classifier(model).in_features, 3)


def native_size(name: str) -> int | None:
    """The square input size a torchvision backbone's published weights were trained at."""
    weights = _official_weights(name)
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


# ---- blocks: what "freeze all but the last N blocks" and per-block learning rates refer to ----


def block_prefixes(backbone: nn.Module) -> list[tuple[str, ...]]:
    """Parameter-name prefixes of each backbone block, input side first."""
    children = dict(backbone.named_children())
    if isinstance(backbone, SmallCNN):
        return [(f"blocks.{i}",) for i in range(len(backbone.blocks))]
    if "layer1" in children:  # ResNet, ResNeXt, Wide ResNet
        layers = [n for n in ("layer1", "layer2", "layer3", "layer4") if n in children]
        return [("conv1", "bn1"), *[(n,) for n in layers]]
    if "features" in children:  # ConvNeXt, EfficientNet, MobileNet, VGG, DenseNet, Swin
        return [(f"features.{n}",) for n, _ in children["features"].named_children()]
    if "encoder" in children and hasattr(children["encoder"], "layers"):  # ViT
        layers = children["encoder"].layers
        return [
            ("conv_proj", "class_token", "encoder.pos_embedding"),
            *[(f"encoder.layers.{n}",) for n, _ in layers.named_children()],
            ("encoder.ln",),
        ]
    if "trunk_output" in children:  # RegNet
        trunk = children["trunk_output"]
        return [("stem",), *[(f"trunk_output.{n}",) for n, _ in trunk.named_children()]]
    return [(n,) for n, c in children.items() if any(True for _ in c.parameters())]


def _block_index(name: str, prefixes: list[tuple[str, ...]]) -> int:
    """The block a parameter or module belongs to; unmatched names (embeddings) go to block 0."""
    for index in range(len(prefixes) - 1, -1, -1):
        if any(name == p or name.startswith(p + ".") for p in prefixes[index]):
            return index
    return 0


def parameter_groups(
    model: Classifier, layers: LayerParams, lr: float
) -> tuple[list[dict[str, Any]], list[nn.Module]]:
    """Optimizer groups with per-block learning rates, and the backbone modules left frozen.

    The head and bottleneck train at `lr`; backbone block d (0 = the last) trains at
    lr * backbone_lr_mult * layer_lr_decay**d if d < trainable_blocks, else it is frozen.
    """
    prefixes = block_prefixes(model.backbone)
    count = len(prefixes)
    trainable = count if layers.trainable_blocks < 0 else min(layers.trainable_blocks, count)
    by_block: dict[int, list[nn.Parameter]] = {}
    for name, parameter in model.backbone.named_parameters():
        by_block.setdefault(_block_index(name, prefixes), []).append(parameter)
    groups = [
        {
            "params": [*model.bottleneck.parameters(), *model.head.parameters()],
            "lr": lr,
            "name": "head",
        },
    ]
    frozen_blocks = set()
    for index, params in sorted(by_block.items()):
        depth = count - 1 - index
        if depth < trainable:
            scale = layers.backbone_lr_mult * layers.layer_lr_decay**depth
            groups.append({"params": params, "lr": lr * scale, "name": f"backbone.block{index}"})
        else:
            frozen_blocks.add(index)
            for parameter in params:
                parameter.requires_grad_(False)
    frozen = [
        module
        for name, module in model.backbone.named_modules()
        if name and _block_index(name, prefixes) in frozen_blocks and not list(module.children())
    ]
    return groups, frozen


# ---- pretrained weights: local file or torch hub cache, verified by hash; never downloaded ----


def _official_weights(name: str) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        return None


def pretrained_normalization(name: str) -> tuple[list[float], list[float]]:
    """The mean/std a pretrained torchvision backbone was trained with (ImageNet's by default)."""
    weights = _official_weights(name)
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
    weights = _official_weights(name)
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
    if not path.is_file():
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
    head = _strip_classifier(model)
    return Backbone(model, head.in_features, 3, head)


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
