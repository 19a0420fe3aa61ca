"""Honest evaluation: the only code that reads target test labels.

The adapted model and the source-only model are scored on the same target test split, side by
side, so negative transfer (adaptation that made things worse) is visible. For each label-free
validator, the target accuracy of the checkpoint it would have chosen shows which validators
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
from adaptflow.models import Classifier
from adaptflow.selection import predict


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


def log_plots(live: Any, classes: list[str], adapted: Scores, source_only: Scores) -> None:
    """Confusion matrices and per-class accuracy of both models, as dvclive plots."""
    for tag, scores in (("adapted", adapted), ("source_only", source_only)):
        live.log_sklearn_plot(
            "confusion_matrix",
            [classes[i] for i in scores.labels.tolist()],
            [classes[i] for i in scores.predictions.tolist()],
            name=f"confusion_{tag}.json",
        )
        live.log_plot(
            f"per_class_accuracy_{tag}",
            [{"class": c, "accuracy": a} for c, a in scores.per_class_accuracy.items()],
            x="accuracy",
            y="class",
            template="bar_horizontal",
        )


SOURCE_ONLY = "source_only_"  # prefix of the source-only model's figures in evaluate.json


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


def _model_row(label: str, metrics: dict[str, Any], prefix: str) -> str:
    figure = [
        metrics[prefix + name]
        for name in ("target_accuracy", "target_macro_f1", "target_ece", "source_test_accuracy")
    ]
    return f"| {label} | " + " | ".join(f"{value:.4f}" for value in figure) + " |"


def headline(metrics: dict[str, Any]) -> list[str]:
    """The result in plain words: accuracy, gain over source-only, and what it means."""
    accuracy, gain = metrics["target_accuracy"], metrics["adaptation_gain"]
    lines = [
        f"**Target accuracy {100 * accuracy:.1f}%** on {metrics['target_test_images']} target "
        f"test images; the source model without adaptation: "
        f"{100 * metrics['source_only_target_accuracy']:.1f}% ({100 * gain:+.1f} points)."
    ]
    if metrics["negative_transfer"]:
        lines.append(
            "**NEGATIVE TRANSFER**: the adapted model is worse than the source model on the target."
        )
    elif metrics["selection"]["fell_back_to_source"] or abs(gain) < 0.005:
        lines.append("Adaptation brought no measurable gain on the target.")
    if accuracy < 0.5:
        lines.append(
            f"**Adaptation failed to make the model usable here**: it is wrong on "
            f"{100 * (1 - accuracy):.0f}% of target test images."
        )
    else:
        lines.append(f"It is wrong on {100 * (1 - accuracy):.1f}% of target test images.")
    return lines


def warnings_block(warnings: list[str]) -> list[str]:
    """The adapt stage's label-free warnings, first thing in the report."""
    if not warnings:
        return ["Label-free warnings: none."]
    lines = [
        f"**{len(warnings)} label-free warning(s)** (found by adapt, without target labels):",
        "",
    ]
    return lines + [f"- {warning}" for warning in warnings]


def _portfolio_table(selection: dict[str, Any]) -> list[str]:
    """Auto runs: every candidate, which rules picked it, and its target accuracy (oracle)."""
    picked_by: dict[str, list[str]] = {}
    for rule, choice in selection["by_validator"].items():
        picked_by.setdefault(choice["member"], []).append(rule)
    lines = [
        "",
        "## Portfolio (adapt.method: auto)",
        "",
        f"Kept: **{selection['chosen']}**, picked by {selection['validator']} without target "
        "labels. Target accuracy is shown here only to judge the rules (oracle).",
        "",
        "| candidate | picked by | target accuracy (oracle) |",
        "|---|---|---:|",
    ]
    for name, accuracy in selection["candidates"].items():
        mark = " (kept)" if name == selection["chosen"] else ""
        rules = ", ".join(picked_by.get(name, [])) or "-"
        lines.append(f"| {name}{mark} | {rules} | {accuracy:.4f} |")
    return lines


def render_report(metrics: dict[str, Any]) -> str:
    """Markdown: the headline and warnings, source-only vs adapted, per-validator choices."""
    selection = metrics["selection"]
    lines = [
        f"# Evaluation: {metrics['method']}",
        "",
        *headline(metrics),
        "",
        *warnings_block(metrics["warnings"]),
        "",
        "| model | target accuracy | target macro-F1 | target ECE | source test accuracy |",
        "|---|---:|---:|---:|---:|",
        _model_row("source only", metrics, SOURCE_ONLY),
        _model_row(f"adapted ({metrics['method']})", metrics, ""),
    ]
    if "candidates" in selection:
        lines += _portfolio_table(selection)
    lines += [
        "",
        "## Label-free selection",
        "",
        "Target accuracy of the model each validator (rule, for auto) would have chosen "
        "(they never see target labels; this table does, to show which of them to trust).",
        "",
        "| validator | chosen epoch | target accuracy |",
        "|---|---:|---:|",
    ]
    for name, choice in selection["by_validator"].items():
        mark = " (configured)" if name == selection["validator"] else ""
        what = (
            f"{choice['member']}, epoch {choice['epoch']}"
            if "member" in choice
            else choice["epoch"]
        )
        lines.append(f"| {name}{mark} | {what} | {choice['target_accuracy']:.4f} |")
    lines += [
        "",
        "## Per-class target accuracy",
        "",
        "| class | source only | adapted |",
        "|---|---:|---:|",
    ]
    source_only = metrics[SOURCE_ONLY + "per_class_target_accuracy"]
    for name, value in metrics["per_class_target_accuracy"].items():
        lines.append(f"| {name} | {source_only[name]:.4f} | {value:.4f} |")
    return "\n".join(lines) + "\n"


def evaluate_run(
    source_model: Classifier,
    adapted_model: Classifier,
    candidates: dict[str, Classifier],
    selection: dict[str, Any],
    target_test: ImagePool,
    source_test: ImagePool,
    device: torch.device,
    batch_size: int,
    ece_bins: int,
) -> tuple[dict[str, Any], Scores, Scores]:
    """All metrics of metrics/evaluate.json, plus the target scores of both models for plots.

    `candidates` maps a candidate file name to its model; `selection` is the adapt stage's
    record of which file each validator chose.
    """

    def on(model: Classifier, pool: ImagePool) -> Scores:
        return score(model, pool, device, batch_size, ece_bins)

    adapted_target, source_target = on(adapted_model, target_test), on(source_model, target_test)
    candidate_accuracy = {name: on(m, target_test).accuracy for name, m in candidates.items()}
    by_validator = {
        name: {
            **{k: v for k, v in choice.items() if k in ("epoch", "member")},
            "target_accuracy": candidate_accuracy[choice["file"]],
        }
        for name, choice in selection["by_validator"].items()
    }
    gain = adapted_target.accuracy - source_target.accuracy
    metrics = {
        "method": selection["method"],
        **figures("", adapted_target, on(adapted_model, source_test).accuracy),
        **figures(SOURCE_ONLY, source_target, on(source_model, source_test).accuracy),
        "adaptation_gain": gain,
        "negative_transfer": gain < 0,
        "selection": {
            "validator": selection["validator"],
            "selected_epoch": selection["selected_epoch"],
            "fell_back_to_source": selection["fell_back_to_source"],
            "by_validator": by_validator,
        },
        "warnings": selection.get("warnings", []),
        "target_test_images": len(target_test),
    }
    if "candidates" in selection:  # auto: every portfolio candidate, scored (the oracle)
        metrics["selection"]["chosen"] = selection["chosen"]
        metrics["selection"]["candidates"] = {
            name: candidate_accuracy[file] for name, file in selection["candidates"].items()
        }
    return metrics, adapted_target, source_target
