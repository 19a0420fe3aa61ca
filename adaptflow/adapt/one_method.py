"""Adapting the source model to the target (`adapt` stage), without target labels.

Reads the source model, the unlabeled target pool and, unless the method is source-free, the
source train and validation splits. Trains with the configured method, scores every epoch
with every usable label-free validator, and keeps the epoch the configured validator prefers.
Target test data is never opened here; target labels only when the user asked for k labeled
target images per class (semi-supervised), from a split evaluation never scores on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import Params
from adaptflow.data.pools import ImagePool, load_pool
from adaptflow.methods.base import method_class, method_options
from adaptflow.models.classifier import Classifier, load_classifier
from adaptflow.training.checkpoints import snapshot_file
from adaptflow.training.engine import FitResult, TrainingData
from adaptflow.training.job import Trained, TrainingJob, train_and_select
from adaptflow.training.validators import check_validator, usable_validators


@dataclass
class Adaptation:
    source_model: Classifier
    adapted_model: Classifier
    fit: FitResult
    validator: str
    selected_epoch: int  # 0: the source model itself (no training, or fallback)
    selected_score: float
    source_model_score: float  # the same validator's score for the unadapted model
    negative_transfer_suspected: bool
    fell_back_to_source: bool
    snapshots: dict[int, Classifier]  # epoch -> weights, for each validator's choice


def _inputs(params: Params, uses_source: bool) -> list[Path]:
    """Files the adapt stage reads for this configuration (what resuming must match)."""
    files = [paths.SOURCE_MODEL, paths.TARGET_TRAIN]
    if uses_source:
        files += [paths.SOURCE_TRAIN, paths.SOURCE_VAL]
    if params.adapt.target_labeled_per_class:
        files.append(paths.TARGET_LABELED)
    return files


def _check_classes(model: Classifier, pools: list[ImagePool]) -> None:
    for pool in pools:
        if pool.classes != model.spec.classes:
            raise AdaptflowError(
                f"{pool.name}: classes {pool.classes} differ from the source model's "
                f"{model.spec.classes}; rerun prepare and pretrain (dvc repro)"
            )


def copy_model(model: Classifier) -> Classifier:
    """A new classifier with the same weights (training changes the copy only)."""
    clone = Classifier(model.spec)
    clone.load_state_dict(model.state_dict())
    return clone


def adaptation_job(
    params: Params,
    checkpoints: Path = paths.CHECKPOINTS / "adapt",
    start: Classifier | None = None,
    target_labeled: ImagePool | None = None,
) -> tuple[TrainingJob, Classifier]:
    """The training job of the configured method (its resumable state in `checkpoints`), and
    the model it starts from: the source model, or `start`. `target_labeled` replaces the k
    labeled target images per class (the fine-tune on the user's labels passes them)."""
    a = params.adapt
    method_type = method_class(a.method)
    options = method_options(a.method, a.method_sections())
    check_validator(params.selection.validator, method_type.uses_source, a.method)
    source_model, data, source_val = _read_inputs(params, method_type.uses_source)
    if start is not None:
        _check_classes(start, [data.target])
        source_model = start
    if target_labeled is not None:
        data = replace(data, target_labeled=target_labeled)
    job = TrainingJob(
        stage="adapt",
        training=a,
        build_method=lambda: method_type(copy_model(source_model), a, options),
        data=data,
        validators=usable_validators(has_source=method_type.uses_source, has_target=True),
        source_val=source_val,
        max_samples=params.selection.max_samples,
        inputs=(params.selection, options, *_inputs(params, method_type.uses_source)),
        checkpoints=checkpoints,
        # what trains this method: not the portfolio, nor the other methods' sections
        training_identity=a.model_dump(mode="json", exclude={"portfolio", *a.method_sections()}),
    )
    return job, source_model


def adapt(
    params: Params,
    device: torch.device,
    live: Any = None,
    checkpoints: Path = paths.CHECKPOINTS / "adapt",
) -> Adaptation | None:
    """Run the configured method and select a checkpoint with the configured validator.

    In a data-parallel run only rank 0 gets the result; other ranks get None.
    """
    job, source_model = adaptation_job(params, checkpoints)
    return run_job(job, source_model, params, device, live)


def run_job(
    job: TrainingJob, source_model: Classifier, params: Params, device: torch.device, live: Any
) -> Adaptation | None:
    """Train `job` and keep the configured validator's epoch (rank 0; other ranks get None)."""
    trained = train_and_select(job, params, device, live)
    if trained is None:
        return None
    return _choose(
        trained, source_model, params.selection.validator, params.adapt.fallback_to_source
    )


def _read_inputs(
    params: Params, uses_source: bool
) -> tuple[Classifier, TrainingData, ImagePool | None]:
    """The source model, the training splits and the source validation split (if read)."""
    source_model, _ = load_classifier(paths.SOURCE_MODEL)
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    source_train = source_val = target_labeled = None
    if uses_source:
        source_train = load_pool(paths.SOURCE_TRAIN, "source train", labeled=True)
        source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    if params.adapt.target_labeled_per_class:
        target_labeled = load_pool(paths.TARGET_LABELED, "target labeled", labeled=True)
    _check_classes(source_model, [p for p in (target, source_train, target_labeled) if p])
    data = TrainingData(source=source_train, target=target, target_labeled=target_labeled)
    return source_model, data, source_val


def _choose(
    trained: Trained, source_model: Classifier, validator: str, fallback_to_source: bool
) -> Adaptation:
    """The validator's epoch, or the source model when it scores higher and fallback is on."""
    result = trained.fit
    chosen = result.best[validator]
    source_score = result.history[0]["scores"][validator]
    negative = result.epochs > 0 and chosen["score"] < source_score
    fall_back = negative and fallback_to_source
    return Adaptation(
        source_model=source_model,
        adapted_model=source_model if fall_back else trained.snapshots[int(chosen["epoch"])],
        fit=result,
        validator=validator,
        selected_epoch=0 if fall_back else int(chosen["epoch"]),
        selected_score=source_score if fall_back else float(chosen["score"]),
        source_model_score=float(source_score),
        negative_transfer_suspected=bool(negative),
        fell_back_to_source=bool(fall_back),
        snapshots=trained.snapshots,
    )


def selection_record(result: Adaptation, method: str) -> dict[str, Any]:
    """What each validator chose (read by evaluate to score every validator's choice)."""
    return {
        "method": method,
        "validator": result.validator,
        "selected_epoch": result.selected_epoch,
        "fell_back_to_source": result.fell_back_to_source,
        "source_model_scores": result.fit.history[0]["scores"],
        "by_validator": {
            name: {
                **choice,
                "epoch": int(choice["epoch"]),
                "file": snapshot_file(int(choice["epoch"])),
            }
            for name, choice in result.fit.best.items()
        },
    }


def summary_metrics(result: Adaptation, method: str) -> dict[str, Any]:
    """metrics/adapt.json: the selection, the negative-transfer guard and training speed."""
    return {
        "method": method,
        "epochs": result.fit.epochs,
        "validator": result.validator,
        "selected_epoch": result.selected_epoch,
        "selected_score": result.selected_score,
        "source_model_score": result.source_model_score,
        "negative_transfer_suspected": result.negative_transfer_suspected,
        "fell_back_to_source": result.fell_back_to_source,
        "train_seconds": round(result.fit.train_seconds, 3),
        "images_per_second": round(result.fit.images_per_second, 1),
        "peak_gpu_memory_mb": result.fit.peak_memory_mb,
        "processes": result.fit.processes,
    }
