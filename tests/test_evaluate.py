"""Evaluation metrics agree with scikit-learn; per-validator choices are scored."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from adaptflow.data.pools import ImagePool
from adaptflow.evaluate import confusion, evaluate_run, render_report, score
from adaptflow.models import Classifier, ModelSpec

CPU = torch.device("cpu")


class FixedModel(Classifier):
    """Predicts from the first pixel: class = round(pixel * 2), a deterministic toy."""

    def features(self, x):
        return x[:, :, 0, 0].repeat(1, 4)

    def head(self, features):  # type: ignore[override]
        value = features[:, 0] * 2
        return torch.stack([-(value - k).abs() * 10 for k in range(3)], 1)

    def forward(self, x):
        return self.head(self.features(x))


def pool(first_pixels, labels) -> ImagePool:
    images = torch.zeros(len(labels), 1, 8, 8, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor(first_pixels, dtype=torch.uint8)
    return ImagePool("test", images, torch.tensor(labels), ["a", "b", "c"])


@pytest.fixture
def model():
    spec = ModelSpec(
        backbone="small_cnn",
        classes=["a", "b", "c"],
        channels=1,
        image_size=8,
        bottleneck_dim=4,
        mean=[0.0],
        std=[1.0],
    )
    return FixedModel(spec)


def test_scores_match_scikit_learn(model):
    data = pool([0, 0, 128, 128, 255, 255, 0, 255], [0, 0, 1, 2, 2, 2, 1, 0])
    scores = score(model, data, CPU, batch_size=3, ece_bins=10)
    predicted, truth = scores.predictions.numpy(), scores.labels.numpy()
    assert predicted.tolist() == [0, 0, 1, 1, 2, 2, 0, 2]
    assert scores.accuracy == pytest.approx(accuracy_score(truth, predicted))
    assert scores.macro_f1 == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert confusion(scores, 3) == confusion_matrix(truth, predicted).tolist()
    assert scores.per_class_accuracy == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 2 / 3})


def test_macro_f1_averages_only_the_classes_present(model):
    data = pool([0, 0, 128], [0, 0, 1])  # class c absent from this split
    scores = score(model, data, CPU, batch_size=8, ece_bins=10)
    assert scores.macro_f1 == pytest.approx(1.0)
    assert set(scores.per_class_accuracy) == {"a", "b"}


def test_negative_transfer_is_flagged_when_adaptation_hurts(model):
    class Worse(FixedModel):
        def head(self, features):  # always predicts class 2
            return torch.tensor([[0.0, 0.0, 1.0]]).repeat(features.shape[0], 1)

    data = pool([0, 128, 255], [0, 1, 2])
    worse = Worse(model.spec)
    selection = {
        "method": "m",
        "validator": "entropy",
        "selected_epoch": 1,
        "fell_back_to_source": False,
        "by_validator": {"entropy": {"epoch": 1, "file": "e1"}, "snd": {"epoch": 2, "file": "e2"}},
    }
    metrics, _, _ = evaluate_run(
        model, worse, {"e1": worse, "e2": model}, selection, data, data, CPU, 8, 10
    )
    assert metrics["negative_transfer"] and metrics["adaptation_gain"] == pytest.approx(-2 / 3)
    assert metrics["selection"]["by_validator"]["snd"]["target_accuracy"] == 1.0
    assert "NEGATIVE TRANSFER" in render_report(metrics)


def test_each_figure_has_one_name_in_the_metrics(model):
    """Adapted figures unprefixed, source-only figures prefixed: no figure stored twice."""
    better = pool([0, 128, 255], [0, 1, 2])
    selection = {
        "method": "m",
        "validator": "entropy",
        "selected_epoch": 1,
        "fell_back_to_source": False,
        "by_validator": {"entropy": {"epoch": 1, "file": "e1"}},
    }

    class Worse(FixedModel):
        def head(self, features):
            return torch.tensor([[1.0, 0.0, 0.0]]).repeat(features.shape[0], 1)

    metrics, _, _ = evaluate_run(
        Worse(model.spec), model, {"e1": model}, selection, better, better, CPU, 8, 10
    )
    assert metrics["target_accuracy"] == 1.0
    assert metrics["source_only_target_accuracy"] == pytest.approx(1 / 3)
    assert metrics["per_class_target_accuracy"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert metrics["source_only_per_class_target_accuracy"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    figures = {"target_accuracy", "target_macro_f1", "target_ece", "source_test_accuracy"}
    figures |= {"per_class_target_accuracy"}
    assert set(metrics) == figures | {f"source_only_{name}" for name in figures} | {
        "method",
        "adaptation_gain",
        "negative_transfer",
        "selection",
        "target_test_images",
    }
    report = render_report(metrics)
    assert "| source only | 0.3333 |" in report and "| adapted (m) | 1.0000 |" in report
