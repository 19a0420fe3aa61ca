"""Honest evaluation: the only code that reads target test labels.

The adapted model and the source-only model are scored on the same target test split, side by
side, so negative transfer (adaptation that made things worse) is visible. For each label-free
validator (or rule), the target accuracy of the model it would have chosen shows which of them
deserve trust on this data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)

from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier
from adaptflow.models.outputs import predict


@dataclass
class Scores:
    accuracy: float
    macro_f1: float  # scikit-learn's: mean F1 over the classes in the labels or the predictions
    ece: float
    per_class_accuracy: dict[str, float]
    predictions: torch.Tensor
    labels: torch.Tensor


def score(
    model: Classifier, pool: ImagePool, device: torch.device, batch_size: int, ece_bins: int
) -> Scores:
    """Accuracy, macro-F1, expected calibration error and per-class accuracy on a labeled pool.

    Macro-F1 is scikit-learn's `f1_score(average="macro")`: the mean F1 over the classes that
    occur in the labels or the predictions, so predicting a class the split lacks costs a 0.
    Per-class accuracy (recall) covers the classes in the labels.
    """
    outputs = predict(model, pool, device, batch_size)
    classes = model.spec.classes
    n = len(classes)
    probs, labels = outputs.logits.softmax(1), outputs.labels
    predictions = probs.argmax(1)
    present = torch.unique(labels)
    scored = torch.unique(torch.cat([labels, predictions]))
    recall = multiclass_accuracy(predictions, labels, num_classes=n, average=None)
    f1 = multiclass_f1_score(predictions, labels, num_classes=n, average=None)
    return Scores(
        accuracy=float(multiclass_accuracy(predictions, labels, num_classes=n, average="micro")),
        macro_f1=float(f1[scored].mean()),
        ece=float(multiclass_calibration_error(probs, labels, num_classes=n, n_bins=ece_bins)),
        per_class_accuracy={classes[i]: float(recall[i]) for i in present.tolist()},
        predictions=predictions,
        labels=labels,
    )


def confusion(scores: Scores, num_classes: int) -> list[list[int]]:
    """Confusion matrix rows = true class, columns = predicted class."""
    matrix = multiclass_confusion_matrix(scores.predictions, scores.labels, num_classes=num_classes)
    return matrix.tolist()


SOURCE_ONLY_PREFIX = "source_only_"  # prefix of the source-only model's figures in evaluate.json


def chooser(selection: dict[str, Any]) -> str:
    """What chose in a selection record: a `validator` (one method: which epoch) or a `rule`
    (`adapt.method: auto`: which member's model). Its choices are under `by_<chooser>`."""
    return "rule" if "rule" in selection else "validator"


def figures(prefix: str, target: Scores, source_test_accuracy: float) -> dict[str, Any]:
    """One model's figures under one name each: `target_accuracy` for the adapted model,
    `source_only_target_accuracy` for the source-only one (what metrics/evaluate.json holds)."""
    return {
        f"{prefix}target_accuracy": target.accuracy,
        f"{prefix}target_macro_f1": target.macro_f1,
        f"{prefix}target_ece": target.ece,
        f"{prefix}source_test_accuracy": source_test_accuracy,
        f"{prefix}per_class_target_accuracy": target.per_class_accuracy,
    }


def evaluate_run(
    source_model: Classifier,
    adapted_model: Classifier,
    chosen_among: dict[str, Classifier],
    selection: dict[str, Any],
    target_test: ImagePool,
    source_test: ImagePool,
    device: torch.device,
    batch_size: int,
    ece_bins: int,
) -> tuple[dict[str, Any], Scores, Scores]:
    """All metrics of metrics/evaluate.json, plus the target scores of both models for plots.

    `chosen_among` maps a file name of models/selection/ to its model; `selection` is the
    adapt stage's record of which file each validator (or rule) chose.
    """

    def on(model: Classifier, pool: ImagePool) -> Scores:
        return score(model, pool, device, batch_size, ece_bins)

    adapted_target, source_target = on(adapted_model, target_test), on(source_model, target_test)
    accuracy = {file: on(model, target_test).accuracy for file, model in chosen_among.items()}
    kind = chooser(selection)
    by_chooser = {
        name: {
            **{k: v for k, v in choice.items() if k in ("epoch", "member")},
            "target_accuracy": accuracy[choice["file"]],
        }
        for name, choice in selection[f"by_{kind}"].items()
    }
    gain = adapted_target.accuracy - source_target.accuracy
    metrics = {
        "method": selection["method"],
        **figures("", adapted_target, on(adapted_model, source_test).accuracy),
        **figures(SOURCE_ONLY_PREFIX, source_target, on(source_model, source_test).accuracy),
        "adaptation_gain": gain,
        "negative_transfer": gain < 0,
        "selection": {
            kind: selection[kind],
            "selected_epoch": selection["selected_epoch"],
            "fell_back_to_source": selection["fell_back_to_source"],
            f"by_{kind}": by_chooser,
        },
        "warnings": selection.get("warnings", []),
        "target_test_images": len(target_test),
    }
    if "models" in selection:  # auto: every model the rules chose among, scored (the oracle)
        metrics["selection"]["chosen"] = selection["chosen"]
        metrics["selection"]["models"] = {
            name: accuracy[file] for name, file in selection["models"].items()
        }
        budget = selection["budget"]
        metrics["selection"]["budget"] = {
            **{k: budget[k] for k in ("budget", "member_epochs", "single_method_epochs")},
            "rungs": [{k: rung[k] for k in ("epoch", "dropped")} for rung in budget["rungs"]],
        }
    if "labeled_selection" in selection:  # the labels' estimate, checked against the test split
        labeled = selection["labeled_selection"]
        interval = labeled["accuracy"]
        metrics["selection"]["labeled_selection"] = {
            **labeled,
            "interval_covers_test_accuracy": interval["low"]
            <= adapted_target.accuracy
            <= interval["high"],
        }
    return metrics, adapted_target, source_target
