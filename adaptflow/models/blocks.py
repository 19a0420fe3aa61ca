"""Backbone blocks: what "freeze all but the last N blocks" and per-block learning rates refer to.

Blocks are listed input side first for every backbone family torchvision has (ResNet, ConvNeXt,
EfficientNet, ViT, RegNet...); `parameter_groups` turns `*.layers` params into optimizer groups.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from adaptflow.core.params import LayerParams
from adaptflow.models.backbones import SmallCNN
from adaptflow.models.classifier import Classifier


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
