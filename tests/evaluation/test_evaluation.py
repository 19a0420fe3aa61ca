"""Evaluation metrics agree with scikit-learn and with calibration error worked by hand;
per-validator choices are scored."""

from __future__ import annotations

import json

import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from adaptflow.data.pools import ImagePool
from adaptflow.evaluation.metrics import confusion, evaluate_run, score
from adaptflow.evaluation.plots import log_plots
from adaptflow.evaluation.report import render_evaluation_report
from adaptflow.models.classifier import Classifier, ModelSpec

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


class TableModel(FixedModel):
    """Predicts row `first pixel` of a table of class probabilities."""

    def __init__(self, spec: ModelSpec, probabilities: list[list[float]]) -> None:
        super().__init__(spec)
        self.log_probs = torch.tensor(probabilities).log()

    def features(self, x):
        return (x[:, :, 0, 0] * 255).round()

    def head(self, features):  # type: ignore[override]
        return self.log_probs[features[:, 0].long()]


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


def test_macro_f1_leaves_out_a_class_neither_in_the_labels_nor_predicted(model):
    data = pool([0, 0, 128], [0, 0, 1])  # class c absent from this split, and never predicted
    scores = score(model, data, CPU, batch_size=8, ece_bins=10)
    assert scores.macro_f1 == pytest.approx(1.0)
    assert set(scores.per_class_accuracy) == {"a", "b"}


def test_macro_f1_is_scikit_learns_when_the_model_predicts_a_class_the_labels_lack(model):
    data = pool([0, 0, 128, 255], [0, 0, 1, 1])  # the last image predicted c, which is absent
    scores = score(model, data, CPU, batch_size=8, ece_bins=10)
    predicted, truth = scores.predictions.numpy(), scores.labels.numpy()
    assert predicted.tolist() == [0, 0, 1, 2]
    # F1 of a, b, c: 1, 2/3 and 0 (c predicted once, never right)
    assert scores.macro_f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert scores.macro_f1 == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert set(scores.per_class_accuracy) == {"a", "b"}  # recall: only classes with labels


# (probabilities over a, b, c; label): confidences 0.55 and 0.58 (one right), 0.75 (right),
# 0.90 (wrong) and 0.92 (right)
CALIBRATION = [
    ([0.55, 0.25, 0.20], 0),
    ([0.58, 0.22, 0.20], 1),
    ([0.15, 0.75, 0.10], 1),
    ([0.05, 0.05, 0.90], 0),
    ([0.92, 0.04, 0.04], 0),
]


@pytest.mark.parametrize(
    ("bins", "expected"),
    [
        # bins (0.5, 0.6], (0.7, 0.8], (0.9, 1]: sum of |bin| / n * |accuracy - confidence|
        (10, 2 / 5 * abs(0.5 - 0.565) + 1 / 5 * abs(1 - 0.75) + 2 / 5 * abs(0.5 - 0.91)),
        # one bin (0.5, 1] holds all five: accuracy 3/5, mean confidence 3.7/5
        (2, abs(3 / 5 - 3.7 / 5)),
    ],
)
def test_expected_calibration_error_matches_a_hand_computation(model, bins, expected):
    table = TableModel(model.spec, [probabilities for probabilities, _ in CALIBRATION])
    data = pool(list(range(len(CALIBRATION))), [label for _, label in CALIBRATION])
    scores = score(table, data, CPU, batch_size=2, ece_bins=bins)
    assert scores.predictions.tolist() == [0, 0, 1, 2, 0]
    assert scores.ece == pytest.approx(expected, abs=1e-6)


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
    assert "NEGATIVE TRANSFER" in render_evaluation_report(metrics)


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
        "warnings",
    }
    report = render_evaluation_report(metrics)
    assert "| source only | 0.3333 |" in report and "| adapted (m) | 1.0000 |" in report


def test_an_auto_run_is_reported_in_rules_and_models_never_validators(model):
    """`adapt.method: auto` chooses with a rule among models: the record, the metrics and the
    report use those words, and every model it chose among is scored (the oracle)."""
    data = pool([0, 128, 255], [0, 1, 2])

    class Collapsed(FixedModel):
        def head(self, features):
            return torch.tensor([[1.0, 0.0, 0.0]]).repeat(features.shape[0], 1)

    collapsed = Collapsed(model.spec)
    selection = {
        "method": "auto",
        "rule": "adapted_consensus",
        "chosen": "shot",
        "selected_epoch": 3,
        "fell_back_to_source": False,
        "by_rule": {
            "adapted_consensus": {"member": "shot", "epoch": 3, "file": "shot.pt"},
            "snd": {"member": "source_only", "epoch": 0, "file": "source_only.pt"},
        },
        "models": {"source_only": "source_only.pt", "shot": "shot.pt"},
        "budget": {
            "budget": 2.5,
            "member_epochs": 5,
            "single_method_epochs": 2,
            "rungs": [
                {"epoch": 1, "scores": {"shot": 0.9, "tent": 0.5}, "dropped": ["tent"]},
                {"epoch": 2, "scores": {"shot": 1.0}, "dropped": []},
            ],
        },
    }
    chosen_among = {"shot.pt": model, "source_only.pt": collapsed}
    metrics, _, _ = evaluate_run(collapsed, model, chosen_among, selection, data, data, CPU, 8, 10)
    chosen = metrics["selection"]
    assert chosen["rule"] == "adapted_consensus" and "validator" not in chosen
    assert chosen["models"] == {"source_only": pytest.approx(1 / 3), "shot": 1.0}
    assert chosen["by_rule"]["snd"] == {
        "member": "source_only",
        "epoch": 0,
        "target_accuracy": pytest.approx(1 / 3),
    }
    report = render_evaluation_report(metrics)
    assert "| rule | chosen model | target accuracy |" in report
    assert "| adapted_consensus (configured) | shot, epoch 3 | 1.0000 |" in report
    assert "| shot (kept) | adapted_consensus | 1.0000 |" in report
    assert "validator" not in report and "candidate" not in report
    budget = "Compute: 5 member-epochs, 2.5x one method's 2 (`adapt.portfolio.budget: 2.5`)."
    assert f"{budget} Successive halving: after epoch 1 the rule dropped tent." in report


def test_plots_show_both_models_confusion_and_per_class_accuracy(model, tmp_path):
    from dvclive import Live

    data = pool([0, 128, 255, 0], [0, 1, 2, 2])
    adapted, source_only = (score(m, data, CPU, 8, 10) for m in (model, model))
    with Live(dir=str(tmp_path), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        log_plots(live, model.spec.classes, adapted, source_only)
    for tag in ("adapted", "source_only"):
        rows = json.loads((tmp_path / "plots/sklearn" / f"confusion_{tag}.json").read_text())
        assert [(r["actual"], r["predicted"]) for r in rows] == [
            ("a", "a"),
            ("b", "b"),
            ("c", "c"),
            ("c", "a"),
        ]
        bars = json.loads(
            (tmp_path / "plots/custom" / f"per_class_accuracy_{tag}.json").read_text()
        )
        accuracy = {row["class"]: row["accuracy"] for row in bars}
        assert accuracy == {"a": 1.0, "b": 1.0, "c": 0.5}


@pytest.mark.parametrize("better", [True, False])
def test_the_report_says_whether_fine_tuning_on_labels_helped_and_whose_estimate_it_gives(better):
    from adaptflow.evaluation.report import labeled_sentence

    tuned = {
        "model": "mcc+labels",
        "from": "mcc",
        "method": "fixmatch",
        "epochs": 2,
        "trained_on": 12,
        "held_out": 12,
        "p_better": 0.81 if better else 0.2,
        "held_out_right": {"mcc": 9, "mcc+labels": 11 if better else 8},
        "kept": better,
    }
    record = {
        "kept": "mcc+labels" if better else "mcc",
        "labels": 24,
        "p_best": {"mcc": 0.93, "tent": 0.07},
        "label_free_pick": "tent",
        "accuracy": {"estimate": 0.9, "low": 0.7, "high": 0.98, "importance_weighted": True},
        "finetune": tuned,
    }
    sentence = labeled_sentence(record)
    assert sentence.startswith("Kept mcc: best with probability 0.93 after 24 target labels")
    assert "Fine-tuned on 12 of the labels (fixmatch, 2 epochs), mcc+labels got" in sentence
    if better:
        assert "got 11 of the 12 others right, mcc 9 (better with probability 0.81" in sentence
        assert "how it was drawn): kept mcc+labels." in sentence
        assert "mcc+labels's target accuracy estimated from the held-out labels: 90.0%" in sentence
    else:
        assert "got 8 of the 12 others right, mcc 9 (better with probability 0.20" in sentence
        assert "how it was drawn): kept mcc." in sentence
        assert "Its target accuracy estimated from the labels: 90.0%" in sentence
