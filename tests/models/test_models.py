"""Backbones, freezing and per-block learning rates, pretrained weights by hash, checkpoints."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import sha256_file
from adaptflow.core.params import LayerParams
from adaptflow.models.backbones import build_backbone, check_backbone, check_input_size
from adaptflow.models.blocks import parameter_groups
from adaptflow.models.classifier import Classifier, ModelSpec, load_classifier, save_classifier
from adaptflow.models.pretrained import load_pretrained_backbone, resolve_weights_file


def spec(backbone="small_cnn", channels=1, size=16, mean=None):
    n = channels if backbone == "small_cnn" else 3
    return ModelSpec(
        backbone=backbone,
        classes=["x", "y", "z"],
        channels=channels,
        image_size=size,
        bottleneck_dim=8,
        mean=mean or [0.5] * n,
        std=[0.25] * n,
    )


def test_grey_images_feed_an_rgb_backbone():
    model = Classifier(spec("resnet18", channels=1, size=32)).eval()
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 3)


def test_feature_extraction_trains_only_the_head():
    model = Classifier(spec())
    groups, frozen = parameter_groups(model, LayerParams(trainable_blocks=0), lr=0.1)
    assert [g["name"] for g in groups] == ["head"]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen)


def test_unfreezing_the_last_blocks_uses_decayed_learning_rates():
    model = Classifier(spec("resnet18", size=32))
    layers = LayerParams(trainable_blocks=2, backbone_lr_mult=0.1, layer_lr_decay=0.5)
    groups, _ = parameter_groups(model, layers, lr=1.0)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates == {"head": 1.0, "backbone.block4": 0.1, "backbone.block3": 0.05}
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert all(re.match(r"layer[34]\.", n) for n in trainable)


def test_unknown_backbones_are_named():
    with pytest.raises(AdaptflowError, match="unknown backbone 'resnet19'.*resnet18"):
        check_backbone("resnet19")


def test_a_checkpoint_round_trips_with_its_spec(tmp_path):
    model = Classifier(spec()).eval()
    save_classifier(tmp_path / "m.pt", model, {"note": "x"})
    loaded, info = load_classifier(tmp_path / "m.pt")
    x = torch.rand(4, 1, 16, 16)
    assert info == {"note": "x"} and torch.equal(model(x), loaded.eval()(x))


def test_a_checkpoint_with_code_in_it_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "adaptflow.classifier/1", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(AdaptflowError, match="weights-only"):
        load_classifier(tmp_path / "evil.pt")


@pytest.fixture
def weights_file(in_tmp):
    path = in_tmp / "resnet18-custom.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_pretrained_weights_load_from_a_local_file_checked_by_hash(weights_file):
    backbone = load_pretrained_backbone("resnet18", str(weights_file), sha256_file(weights_file))
    assert backbone.feature_dim == 512 and backbone.channels == 3


def test_a_weights_file_with_the_wrong_hash_is_refused(weights_file):
    with pytest.raises(AdaptflowError, match="expected 0000.*corrupt or not the weights"):
        resolve_weights_file("resnet18", str(weights_file), "0" * 64)


def test_without_a_hash_the_prefix_in_torchvisions_file_name_must_match(weights_file):
    with pytest.raises(AdaptflowError, match=r"expected f37072fd"):
        resolve_weights_file("resnet18", str(weights_file), None)


def test_weights_outside_the_project_and_hub_cache_are_refused(in_tmp, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "resnet18.pth"
    outside.write_bytes(b"x")
    with pytest.raises(AdaptflowError, match="pretrain.weights_file: .* outside"):
        resolve_weights_file("resnet18", str(outside), "0" * 64)
    with pytest.raises(AdaptflowError, match="outside"):
        resolve_weights_file("resnet18", "../../../etc/passwd", "0" * 64)


def test_missing_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(AdaptflowError) as caught:
        resolve_weights_file("resnet18", None, None)
    message = str(caught.value)
    assert "hub/checkpoints/resnet18-f37072fd.pth" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "nothing is downloaded" in message


@pytest.mark.parametrize(
    ("name", "size", "features"),
    [
        ("resnet18", 32, 512),
        ("resnet50", 32, 2048),
        ("convnext_tiny", 32, 768),
        ("efficientnet_b0", 32, 1280),
        ("vit_b_16", 224, 768),
    ],
)
def test_a_torchvision_backbone_from_a_weights_file_trains_a_step_at_a_size_it_takes(
    in_tmp, name, size, features
):
    path = in_tmp / f"{name}.pth"
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    backbone = load_pretrained_backbone(name, str(path), sha256_file(path))
    assert backbone.feature_dim == features and backbone.head.out_features == 1000
    check_input_size(backbone, name, size)
    model = Classifier(spec(name, channels=1, size=size), backbone).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = model.bottleneck[0].weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(
        model(torch.rand(2, 1, size, size)), torch.tensor([0, 1])
    )
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.bottleneck[0].weight)


@pytest.mark.parametrize(
    ("name", "size", "expect"), [("vit_b_16", 32, "224px"), ("convnext_tiny", 28, "224px")]
)
def test_an_image_size_the_backbone_cannot_take_is_refused_naming_the_param(name, size, expect):
    backbone = build_backbone(name, 3)
    with pytest.raises(
        AdaptflowError, match=rf"data.image_size={size} does not fit backbone {name}.*{expect}"
    ):
        check_input_size(backbone, name, size)
