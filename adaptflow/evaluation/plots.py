"""Evaluation plots through dvclive (`dvc plots show`): confusion matrices, per-class accuracy."""

from __future__ import annotations

from typing import Any

from adaptflow.evaluation.metrics import Scores


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
