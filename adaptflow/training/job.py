"""What the training stages (pretrain, adapt) share: one recipe, run once per process.

`train_and_select` is the recipe: seed, build the method, train it with the shared loop while
label-free validators score every epoch and resumable checkpoints are kept, then reload the
epoch each validator chose (the checkpoints stay until the stage has written its outputs).
`run_training` runs a stage's training in this process, or in torchrun workers when params ask
for several, and hands back rank 0's result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from adaptflow.core.devices import seed_everything
from adaptflow.core.io import fingerprint, load_torch
from adaptflow.core.live import live_logger
from adaptflow.core.logs import is_main_process
from adaptflow.core.params import Params, TrainingParams
from adaptflow.data.pools import ImagePool
from adaptflow.methods.base import Method
from adaptflow.models.classifier import Classifier, ModelSpec
from adaptflow.training.checkpoints import CheckpointStore, checkpoint_directory
from adaptflow.training.distributed import process_group, relaunched
from adaptflow.training.engine import FitResult, TrainingData, fit, loop_settings
from adaptflow.training.validators import Selector

Result = TypeVar("Result")
SCORING_BATCH = 256  # images per forward pass when the validators score a model


@dataclass
class TrainingJob:
    """What one training stage trains, on what data, and how its epochs are scored."""

    stage: str  # "pretrain" or "adapt": its params section, scratch directory and log name
    training: TrainingParams
    build_method: Callable[[], Method]  # called with the RNGs seeded: initial weights follow seed
    data: TrainingData
    validators: list[str]
    source_val: ImagePool | None  # labeled source validation images, for validators needing them
    max_samples: int  # images per split each validator scores
    inputs: tuple = ()  # besides the training params, what a resumed run must share (files...)
    checkpoints: Path | None = None  # resumable state; default: the stage's own directory
    until_epoch: int | None = None  # stop after this epoch of the schedule (a budget's rung)
    # what of the training params a resumed run must share; None: all of `training`
    training_identity: Any = None
    fingerprint: str | None = None  # job_fingerprint, when the caller already computed it


@dataclass
class Trained:
    fit: FitResult
    snapshots: dict[int, Classifier]  # epoch -> weights, for each validator's chosen epoch


def train_and_select(
    job: TrainingJob, params: Params, device: torch.device, live: Any = None
) -> Trained | None:
    """Seed, build the method, train and score every epoch (resuming where a run stopped), and
    reload each validator's chosen epoch. Rank 0 gets the result, other ranks None.

    The checkpoints stay: the stage discards them once its outputs are written
    (`discard_checkpoints`), so a failure while writing them costs no training."""
    seed_everything(params.seed)
    method = job.build_method()
    autocast, _ = loop_settings(job.training, device)
    selector = Selector(
        job.validators,
        job.source_val,
        job.data.target,
        device,
        SCORING_BATCH,
        job.max_samples,
        autocast=autocast,
    )
    sync_batchnorm = params.distributed.sync_batchnorm
    store = CheckpointStore(
        job.checkpoints or checkpoint_directory(job.stage),
        job.fingerprint or job_fingerprint(job, params, device),  # input files hashed once
    )
    result = fit(
        method,
        job.data,
        job.training,
        stage=job.stage,
        seed=params.seed,
        device=device,
        selector=selector,
        store=store,
        live=live,
        sync_batchnorm=sync_batchnorm,
        until_epoch=job.until_epoch,
    )
    if result is None:
        return None
    snapshots = {
        epoch: _load_weights(method.model.spec, path) for epoch, path in result.snapshots.items()
    }
    return Trained(result, snapshots)


def job_fingerprint(job: TrainingJob, params: Params, device: torch.device) -> str:
    """What trained a job's state: resuming, or reusing it, needs the same fingerprint.

    Not the process count: a run may resume on another number of processes."""
    training = job.training if job.training_identity is None else job.training_identity
    sync_batchnorm = params.distributed.sync_batchnorm
    return fingerprint(training, params.seed, device.type, sync_batchnorm, *job.inputs)


def _load_weights(spec: ModelSpec, path: Path) -> Classifier:
    """A plain classifier (training may have synchronised its BatchNorm) with saved weights."""
    model = Classifier(spec)
    model.load_state_dict(load_torch(path))
    return model


def run_training(
    params: Params,
    stage: str,
    script: str,
    train: Callable[[torch.device, Any], Result | None],
    script_args: tuple[str, ...] = (),
    plots: bool = True,
) -> Result | None:
    """`train(device, live)` in this process, or in torchrun workers when params ask for several.

    Returns what rank 0's `train` returned; None in the launching process (its workers did the
    work and rank 0 wrote the outputs) and on other ranks, which write nothing. `script_args`
    go to the relaunched script; `plots: False` logs no dvclive plots (`live` is None).
    """
    if relaunched(params, stage, script, script_args):
        return None
    with (
        process_group(params.device, params.distributed) as device,
        live_logger(stage, enabled=is_main_process() and plots) as live,
    ):
        return train(device, live)
