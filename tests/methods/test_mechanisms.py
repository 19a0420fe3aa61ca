"""Each method does what it claims on a real (small) MNIST -> UCI digits shift.

These check mechanisms (what a method changes, what it drives down), not just that it runs.
"""

from __future__ import annotations

import pytest
import torch

from adaptflow.core.devices import seed_everything
from adaptflow.core.params import LayerParams
from adaptflow.methods.adabn import batchnorm_layers
from adaptflow.methods.adversarial import AdversarialMethod
from adaptflow.methods.base import all_methods, method_class
from adaptflow.methods.cdan import CdanOptions, MultilinearMap
from adaptflow.methods.coral import coral_distance
from adaptflow.methods.dan import mk_mmd
from adaptflow.methods.dann import DannOptions
from adaptflow.methods.fixmatch import FixMatchOptions
from adaptflow.methods.layers import entropy, reverse_gradient
from adaptflow.methods.mcc import class_confusion
from adaptflow.methods.shot import centroid_pseudo_labels
from adaptflow.methods.source_only import SourceOnly
from adaptflow.methods.tent import adapt_on_batch, batchnorm_affine_parameters

from .conftest import copy_of, features, images_of, target_accuracy, training

ADVERSARIAL = {"lr": 0.01, "epochs": 4, "steps_per_epoch": 15}
NO_REVERSAL = 1e-9  # a warm-up this slow keeps the reversal coefficient at ~0 throughout


def changed(before: torch.nn.Module, after: torch.nn.Module) -> set[str]:
    old, new = before.state_dict(), after.state_dict()
    return {k for k in old if not torch.equal(old[k].float(), new[k].float())}


def last_epoch(result, name: str) -> float:
    return result.history[-1]["losses"][name]


def test_the_shift_hurts_the_source_model(source_model, domains):
    assert target_accuracy(copy_of(source_model), domains) < 0.5


def test_source_only_changes_nothing(adapt_with, source_model):
    method, _ = adapt_with("source_only")
    assert isinstance(method, SourceOnly)
    assert method.epochs(5) == 0 and method.trainable_groups() == []
    assert changed(source_model, method.model) == set()


@pytest.mark.parametrize("name", ["dann", "cdan"])
def test_adversarial_methods_train_their_discriminator_at_the_methods_learning_rate(
    adapt_with, source_model, name
):
    seed_everything(0)  # as adapt_with does: the same initial discriminator
    untrained = method_class(name)(
        copy_of(source_model), training(lr=0.02), method_class(name).Options()
    )
    method, _ = adapt_with(name, lr=0.02)
    assert isinstance(method, AdversarialMethod)
    groups = {group["name"]: group for group in untrained.trainable_groups()}  # before schedule
    assert groups["discriminator"]["lr"] == pytest.approx(0.02 * untrained.options.lr_mult)
    assert groups["head"]["lr"] == groups["discriminator"]["lr"]
    before = untrained.discriminator.state_dict()
    after = method.discriminator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_feature_extraction_trains_only_the_bottleneck_and_head(adapt_with, source_model):
    method, _ = adapt_with("finetune", layers=LayerParams(trainable_blocks=0))
    touched = changed(source_model, method.model)
    assert touched and all(k.startswith(("bottleneck.", "head.")) for k in touched)


def test_adabn_changes_only_batchnorm_statistics_and_helps(adapt_with, source_model, domains):
    method, _ = adapt_with("adabn")
    touched = changed(source_model, method.model)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert touched and all(k.endswith(stats) for k in touched)
    first_conv, first_bn = method.model.backbone.blocks[0][0][:2]
    with torch.no_grad():  # the first BN layer now holds the target's statistics
        activations = first_conv(method.model.input(images_of(domains["target"])))
    target_mean = activations.mean(dim=(0, 2, 3))
    assert torch.allclose(first_bn.running_mean, target_mean, rtol=0.02, atol=1e-3)
    assert target_accuracy(method.model, domains) > target_accuracy(source_model, domains) + 0.2


def test_tent_lowers_entropy_changing_only_batchnorm(adapt_with, source_model, domains):
    def mean_entropy(model):
        model.eval()
        with torch.no_grad():
            return float(entropy(model(images_of(domains["target"])).softmax(1)).mean())

    method, _ = adapt_with("tent")
    touched = changed(source_model, method.model)
    layers = batchnorm_layers(method.model)
    bn_names = {n for n, m in method.model.named_modules() if m in layers}
    assert any(k.endswith(".weight") for k in touched)
    assert all(k.rsplit(".", 1)[0] in bn_names for k in touched)
    assert mean_entropy(method.model) < mean_entropy(copy_of(source_model))


def test_tent_adapts_at_inference_one_batch_at_a_time(source_model, domains):
    model = copy_of(source_model)
    optimizer = torch.optim.SGD(batchnorm_affine_parameters(model), lr=0.05)
    before = [p.clone() for p in batchnorm_affine_parameters(model)]
    logits = adapt_on_batch(model, images_of(domains["target"])[:64], optimizer)
    assert logits.shape == (64, 10)
    after = batchnorm_affine_parameters(model)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_dann_drives_its_domain_discriminator_towards_chance(adapt_with):
    _, reversed_ = adapt_with("dann", DannOptions(lr_mult=1.0), **ADVERSARIAL)
    _, plain = adapt_with("dann", DannOptions(lr_mult=1.0, warmup=NO_REVERSAL), **ADVERSARIAL)
    assert last_epoch(plain, "domain_accuracy") > 0.9  # the domains are easy to tell apart
    assert last_epoch(reversed_, "domain_accuracy") < 0.65  # unless the features are aligned


def test_cdan_conditions_the_discriminator_on_predictions_and_fools_it(adapt_with):
    mapping = MultilinearMap(feature_dim=3, num_classes=2, max_dim=100)
    f, p = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.25, 0.75]])
    assert torch.allclose(mapping(f, p), torch.tensor([[0.25, 0.5, 0.75, 0.75, 1.5, 2.25]]))
    assert MultilinearMap(feature_dim=64, num_classes=100, max_dim=256).out_features == 256
    _, reversed_ = adapt_with("cdan", CdanOptions(lr_mult=1.0), **ADVERSARIAL)
    _, plain = adapt_with("cdan", CdanOptions(lr_mult=1.0, warmup=NO_REVERSAL), **ADVERSARIAL)
    assert last_epoch(plain, "domain_accuracy") > 0.9
    assert last_epoch(reversed_, "domain_accuracy") < last_epoch(plain, "domain_accuracy") - 0.1


def test_coral_reduces_the_covariance_distance_between_domains(adapt_with, source_model, domains):
    method, _ = adapt_with("coral")

    def distance(model):
        return float(
            coral_distance(features(model, domains["source"]), features(model, domains["target"]))
        )

    assert distance(method.model) < 0.5 * distance(source_model)


def test_dan_reduces_the_mmd_between_domains(adapt_with, source_model, domains):
    method, _ = adapt_with("dan")

    def mmd(model):
        return float(
            mk_mmd(
                features(model, domains["source"]),
                features(model, domains["target"]),
                [0.5, 1.0, 2.0],
            )
        )

    assert mmd(method.model) < 0.5 * mmd(source_model)


def test_mcc_reduces_class_confusion_on_the_target(adapt_with, source_model, domains):
    method, _ = adapt_with("mcc", epochs=4, steps_per_epoch=15)

    def confusion(model):  # of the model's own (temperature 1) target predictions
        model.eval()
        with torch.no_grad():
            return float(class_confusion(model(images_of(domains["target"])), 1.0))

    assert confusion(method.model) < 0.85 * confusion(source_model)


def test_fixmatch_learns_only_from_confident_pseudo_labels(adapt_with):
    _, never = adapt_with("fixmatch", FixMatchOptions(threshold=1.0))
    assert all(r["losses"]["pseudo_label_rate"] == 0 for r in never.history[1:])
    assert all(r["losses"]["pseudo_label_ce"] == 0 for r in never.history[1:])
    _, confident = adapt_with("fixmatch", FixMatchOptions(threshold=0.8))
    rates = [r["losses"]["pseudo_label_rate"] for r in confident.history[1:]]
    assert 0 < rates[0] < 1 and rates[-1] > rates[0]  # more target images pass as training goes


def test_shot_keeps_the_source_hypothesis_and_improves_the_target(
    adapt_with, source_model, domains
):
    method, _ = adapt_with("shot")
    touched = changed(source_model, method.model)
    assert not any(k.startswith("head.") for k in touched)
    assert any(k.startswith("backbone.") for k in touched)
    assert target_accuracy(method.model, domains) > target_accuracy(source_model, domains) + 0.2


def test_shot_pseudo_labels_follow_feature_clusters_not_the_classifier():
    points = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    probs = torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])  # sample 1 misled
    assert centroid_pseudo_labels(points, probs, rounds=1).tolist() == [0, 0, 1, 1]


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    reverse_gradient(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_every_registered_method_has_a_mechanism_test():
    tested = {
        "source_only",
        "finetune",
        "adabn",
        "tent",
        "dann",
        "cdan",
        "coral",
        "dan",
        "mcc",
        "fixmatch",
        "shot",
    }
    assert set(all_methods()) == tested
