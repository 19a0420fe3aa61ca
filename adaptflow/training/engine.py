"""The one training loop: devices, precision, checkpoint/resume, progress and logging.

`fit` drives any `Method` (adaptflow.methods) through these phases:

  set up          place the method on the device (precision, memory format, BatchNorm over
                  processes), size batches and steps, choose the loader, build the optimizer
  start or resume score the untrained model as epoch 0, or load the state saved after epoch k
  each epoch      `_train_one_epoch`: per step a source, a target and (semi-supervised) a
                  labeled target batch; the method's losses; backward; an optimizer update
                  per group of `grad_accum_steps` steps
                  `_end_epoch` (rank 0): score with the label-free validators, log, keep the
                  best epoch per validator and save a resumable state

Determinism: each epoch reseeds every RNG from (seed, epoch), so an epoch's data order,
augmentation and dropout depend only on the state at its start. A run resumed from the
checkpoint of epoch k therefore ends with the same weights as one that never stopped (CPU).

Gradient accumulation: an epoch's steps form groups of `grad_accum_steps`, each ending in one
update with the mean gradient of its steps. When the steps per epoch are not a multiple of it,
the epoch's last group is shorter and still updates (the mean over its own steps), so no
gradient outlives its epoch or misses the checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from adaptflow.core.devices import epoch_seed, seed_everything
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import load_torch
from adaptflow.core.params import TrainingParams
from adaptflow.data.augment import RandomAffine
from adaptflow.data.batch import Batch
from adaptflow.data.pools import ImagePool
from adaptflow.methods.base import Method
from adaptflow.training.checkpoints import CheckpointStore
from adaptflow.training.distributed import World, all_reduce, check_even_split, current_world
from adaptflow.training.optim import build_optimizer, build_schedule
from adaptflow.training.streams import DomainStream, choose_loader, steps_per_epoch
from adaptflow.training.sync_batchnorm import synchronize_batchnorm
from adaptflow.training.validators import Selector

log = logging.getLogger(__name__)
CUDA_SYNC_EVERY = 20  # steps between host syncs (NaN check, progress) on a GPU


@dataclass
class TrainingData:
    source: ImagePool | None  # labeled source train split; None for source-free methods
    target: ImagePool | None  # unlabeled target pool; None when pretraining
    target_labeled: ImagePool | None = None  # k labeled target images per class, if any


@dataclass
class FitResult:
    history: list[dict[str, Any]]  # one record per epoch; epoch 0 is the model before training
    best: dict[str, dict[str, float]]  # validator -> {"epoch", "score"} over trained epochs
    snapshots: dict[int, Path]  # epoch -> weights file of each epoch some validator prefers
    epochs: int
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float | None = None
    processes: int = 1  # data-parallel training processes
    resumed_after: int = 0  # the epoch this call went on from (its earlier ones were stored)


def fit(
    method: Method,
    data: TrainingData,
    params: TrainingParams,
    *,
    stage: str,
    seed: int,
    device: torch.device,
    selector: Selector,
    store: CheckpointStore,
    live: Any = None,
    sync_batchnorm: bool = True,
    until_epoch: int | None = None,
) -> FitResult | None:
    """Train `method` for its epochs, scoring every epoch; resume from `store` when possible.

    In a data-parallel run every process trains; rank 0 alone scores, saves and logs, and
    gets the result (other ranks get None). `sync_batchnorm`: BatchNorm statistics over the
    global batch rather than each process's rows. `until_epoch`: stop after that epoch of the
    whole schedule (a rung of a budgeted search); a later call with the same store goes on
    from there and ends with the weights of one uninterrupted run.
    """
    loop = _set_up(method, data, params, stage, device, sync_batchnorm)
    history, start = _start_or_resume(loop, store, selector, live)
    trainer = method  # what runs the steps: the method, or DDP around it (gradient averaging)
    if loop.world.is_distributed and loop.optimizer is not None:
        trainer = _data_parallel(method, device)
    guard = _LossGuard(stage, loop.world, device)
    last = loop.epochs if until_epoch is None else min(until_epoch, loop.epochs)
    for epoch in range(start, last + 1):
        record = _train_one_epoch(loop, trainer, epoch, seed, guard)
        if loop.world.is_main:
            _end_epoch(loop, record, history, selector, store, live)
    if not loop.world.is_main:
        return None
    return dataclasses.replace(_result(loop, history, store), resumed_after=start - 1)


@dataclass
class _Loop:
    """What every epoch of one `fit` call uses, fixed at set-up."""

    stage: str
    method: Method
    params: TrainingParams
    device: torch.device
    world: World
    autocast: bool  # bf16
    channels_last: bool
    epochs: int
    steps: int  # steps per epoch
    batch_sizes: dict[str, int]  # split -> global images per step
    pools: dict[str, ImagePool]  # split -> its images (on the device with loader `device`)
    loader: str
    target: ImagePool | None  # the whole unlabeled target pool, for the method's epoch work
    optimizer: torch.optim.Optimizer | None  # None: the method trains nothing
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    augment: RandomAffine


def _set_up(
    method: Method,
    data: TrainingData,
    params: TrainingParams,
    stage: str,
    device: torch.device,
    sync_batchnorm: bool,
) -> _Loop:
    """Put the method on the device, size batches and steps, build optimizer and schedule."""
    world = current_world()
    autocast, channels_last = loop_settings(params, device)
    method.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if world.is_distributed and sync_batchnorm:
        synchronize_batchnorm(method, device)
    if params.compile:
        method.model.backbone.compile()
    epochs = method.epochs(params.epochs)
    batch_sizes = _batch_sizes(stage, data, params, world)
    splits = {"source": data.source, "target": data.target, "target_labeled": data.target_labeled}
    pools = {name: pool for name, pool in splits.items() if name in batch_sizes}
    steps = steps_per_epoch(
        params.steps_per_epoch,
        [(len(pools[n]), batch_sizes[n]) for n in ("source", "target") if n in pools],
    )
    loader = choose_loader(params.loader, list(pools.values()), device)
    if loader == "device":
        pools = {name: pool.to(device) for name, pool in pools.items()}
    optimizer = build_optimizer(method.trainable_groups(), params, device)
    updates = epochs * math.ceil(steps / params.grad_accum_steps)
    return _Loop(
        stage=stage,
        method=method,
        params=params,
        device=device,
        world=world,
        autocast=autocast,
        channels_last=channels_last,
        epochs=epochs,
        steps=steps,
        batch_sizes=batch_sizes,
        pools=pools,
        loader=loader,
        target=data.target,
        optimizer=optimizer,
        scheduler=build_schedule(optimizer, params.schedule, updates),
        augment=RandomAffine(params.augment),
    )


def _start_or_resume(
    loop: _Loop, store: CheckpointStore, selector: Selector, live: Any
) -> tuple[list[dict[str, Any]], int]:
    """(history so far, first epoch to train): epoch 0 scored afresh, or the saved state."""
    state = _load_state(store, loop.world, loop.device)
    if state is None:
        scores = selector.scores(loop.method.model) if loop.world.is_main else {}
        history = [
            {"epoch": 0, "losses": {}, "scores": scores, "seconds": 0.0, "images_per_second": 0.0}
        ]
        start = 1
    else:
        loop.method.load_state_dict(state["method"])
        if loop.optimizer is not None:
            loop.optimizer.load_state_dict(state["optimizer"])
            loop.scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
        log.info("%s: resuming after epoch %d from %s", loop.stage, state["epoch"], store.directory)
    for record in history:
        _log_epoch(live, record)
    return history, start


def _train_one_epoch(
    loop: _Loop, trainer: torch.nn.Module, epoch: int, seed: int, guard: _LossGuard
) -> dict[str, Any]:
    """Every process: the epoch's steps, then its loss means, img/s and peak memory."""
    if loop.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(loop.device)
    streams = _begin_epoch(loop, epoch, seed)
    started = time.perf_counter()
    progress, images = _run_steps(loop, trainer, streams, epoch, guard)
    if loop.device.type == "cuda":
        torch.cuda.synchronize(loop.device)
    seconds = time.perf_counter() - started
    losses = progress.means(loop.device)  # collectives: every process takes part
    images = float(all_reduce(torch.tensor(float(images), device=loop.device)))
    return {
        "epoch": epoch,
        "losses": losses,
        "seconds": seconds,
        "images_per_second": images / seconds if seconds > 0 else 0.0,
        "peak_memory_mb": _peak_memory_mb(loop.device),
    }


def _begin_epoch(loop: _Loop, epoch: int, seed: int) -> dict[str, Iterator[Batch]]:
    """Reseed every RNG from (seed, epoch), do the method's epoch work, open each split's stream."""
    seed_everything(epoch_seed(seed, epoch))
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    loop.method.begin_epoch(epoch, loop.target, loop.device)
    loop.method.train()
    return {
        name: iter(
            DomainStream(
                pool,
                loop.batch_sizes[name],
                loop.steps,
                generator,
                device=loop.device,
                augment=loop.augment,
                channels_last=loop.channels_last,
                world=loop.world,
                loader=loop.loader,
                workers=loop.params.workers,
            )
        )
        for name, pool in loop.pools.items()
    }


def _run_steps(
    loop: _Loop,
    trainer: torch.nn.Module,
    streams: dict[str, Iterator[Batch]],
    epoch: int,
    guard: _LossGuard,
) -> tuple[_Progress, int]:
    """The epoch's steps: forward, loss check, backward; an update at the end of each group.

    Returns the running loss sums and the number of images this process trained on.
    """
    progress, images, pending = _Progress(), 0, False
    steps = loop.steps if loop.method.takes_steps else 0
    bar = tqdm(
        range(steps),
        desc=f"{loop.stage} {epoch}/{loop.epochs}",
        leave=False,
        disable=None if loop.world.is_main else True,
    )
    for step in bar:
        loop.method.progress = ((epoch - 1) * loop.steps + step) / (loop.epochs * loop.steps)
        batches = {name: next(stream) for name, stream in streams.items()}
        images += sum(b.images.shape[0] for b in batches.values())
        group_size, ends_group = _accumulation_group(step, steps, loop.params.grad_accum_steps)
        with _gradient_sync(trainer, loop.method, ends_group):
            with torch.autocast(loop.device.type, dtype=torch.bfloat16, enabled=loop.autocast):
                output = trainer(
                    batches.get("source"), batches.get("target"), batches.get("target_labeled")
                )
            loss = sum(output.losses.values()) if output.losses else None
            if loss is not None:
                progress.add({**output.losses, **output.logs, "loss": loss})
                if _host_sync_point(loop.device, step, steps):
                    mean = guard.check(loss, progress, epoch, step + 1)
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                if loop.optimizer is not None and loss.requires_grad:
                    (loss / group_size).backward()
                    pending = True
        if ends_group and pending:
            loop.optimizer.step()
            loop.optimizer.zero_grad(set_to_none=True)
            loop.scheduler.step()
            pending = False
    return progress, images


def _accumulation_group(step: int, steps: int, accum_steps: int) -> tuple[int, bool]:
    """(steps in `step`'s accumulation group, whether `step` ends it).

    Groups of `accum_steps`; the epoch's last group may be shorter, so it ends the epoch.
    """
    first = step - step % accum_steps
    size = min(accum_steps, steps - first)
    return size, step + 1 == first + size


def _gradient_sync(
    trainer: torch.nn.Module, method: Method, sync: bool
) -> contextlib.AbstractContextManager:
    """DDP's `no_sync` until a group's last step: gradients are averaged over processes once."""
    if sync or trainer is method:
        return contextlib.nullcontext()
    return trainer.no_sync()


def _host_sync_point(device: torch.device, step: int, steps: int) -> bool:
    """Whether to read the loss on the host now: every step on a CPU; on a GPU every
    CUDA_SYNC_EVERY steps and at the epoch's last."""
    return device.type != "cuda" or (step + 1) % CUDA_SYNC_EVERY == 0 or step + 1 == steps


class _LossGuard:
    """Stops training on a non-finite loss, naming the epoch, the step and the last finite loss."""

    def __init__(self, stage: str, world: World, device: torch.device) -> None:
        self.stage, self.world, self.device = stage, world, device
        self.last_finite = math.nan

    def check(self, loss: torch.Tensor, progress: _Progress, epoch: int, step: int) -> float:
        """The epoch's mean loss so far; raises, on every process alike, if a loss diverged."""
        mean = float(progress.sums["loss"]) / progress.count
        current = float(loss.detach())
        diverged = not (math.isfinite(current) and math.isfinite(mean))
        if self.world.is_distributed:  # every rank stops at the same step
            flag = torch.tensor(float(diverged), device=self.device)
            diverged = bool(all_reduce(flag, op="max"))
        if diverged:
            raise AdaptflowError(
                f"{self.stage}: loss became {current} at epoch {epoch}, step {step} "
                f"(last finite loss {self.last_finite:.4g}); lower {self.stage}.lr or check "
                "the data"
            )
        self.last_finite = current
        return mean


def _end_epoch(
    loop: _Loop,
    record: dict[str, Any],
    history: list[dict[str, Any]],
    selector: Selector,
    store: CheckpointStore,
    live: Any,
) -> None:
    """Rank 0: score the epoch, log it, keep each validator's best weights, save the state."""
    record = {**record, "scores": selector.scores(loop.method.model)}
    history.append(record)
    _log_epoch(live, record)
    peak = record["peak_memory_mb"]
    log.info(
        "%s epoch %d/%d  %s  |  %s  |  %.0f img/s%s",
        loop.stage,
        record["epoch"],
        loop.epochs,
        "  ".join(f"{k} {v:.4f}" for k, v in record["losses"].items()),
        "  ".join(f"{k} {v:.4f}" for k, v in record["scores"].items()),
        record["images_per_second"],
        f"  |  peak {peak:.0f} MiB" if peak is not None else "",
    )
    _checkpoint(loop, record["epoch"], history, store)


def _checkpoint(
    loop: _Loop, epoch: int, history: list[dict[str, Any]], store: CheckpointStore
) -> None:
    """Save the weights of `epoch` if a validator prefers it, drop others, save the state."""
    best = _best_by_validator(history)
    if any(b["epoch"] == epoch for b in best.values()):
        store.save_snapshot(epoch, loop.method.model)
    store.prune({b["epoch"] for b in best.values()})
    optimizer, scheduler = loop.optimizer, loop.scheduler
    store.save(
        {
            "epoch": epoch,
            "method": loop.method.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history,
        }
    )


def _result(loop: _Loop, history: list[dict[str, Any]], store: CheckpointStore) -> FitResult:
    """Rank 0: each validator's best epoch, its weights file, and the training speed."""
    best = _best_by_validator(history)
    if loop.epochs == 0:
        store.save_snapshot(0, loop.method.model)
    trained = [r for r in history if r["epoch"] > 0]
    train_seconds = sum(r["seconds"] for r in trained)
    total_images = sum(r["images_per_second"] * r["seconds"] for r in trained)
    peaks = [r["peak_memory_mb"] for r in trained if r.get("peak_memory_mb") is not None]
    return FitResult(
        history=history,
        best=best,
        snapshots={b["epoch"]: store.snapshot_path(b["epoch"]) for b in best.values()},
        epochs=loop.epochs,
        train_seconds=train_seconds,
        images_per_second=total_images / train_seconds if train_seconds > 0 else 0.0,
        peak_memory_mb=max(peaks) if peaks else None,
        processes=loop.world.size,
    )


def _batch_sizes(
    stage: str, data: TrainingData, params: TrainingParams, world: World
) -> dict[str, int]:
    """Global images per step of each split in use; refuse sizes the data cannot supply."""
    target_key = "target_batch_size" if params.target_batch_size else "batch_size"
    wanted = [
        ("source", data.source, params.batch_size, "batch_size"),
        ("target", data.target, params.target_batch, target_key),
    ]
    sizes = {}
    for name, pool, size, key in wanted:
        if pool is None or not len(pool):
            continue
        if size > len(pool):
            raise AdaptflowError(
                f"{stage}.{key}={size} is larger than the {pool.name} split "
                f"({len(pool)} images); lower {stage}.{key}"
            )
        check_even_split(stage, key, size, world.size)
        sizes[name] = size
    labeled = data.target_labeled
    if labeled is not None and len(labeled):
        # a multiple of the process count: equal shares keep the mean of means the global mean
        sizes["target_labeled"] = min(params.batch_size, len(labeled)) // world.size * world.size
        if not sizes["target_labeled"]:
            raise AdaptflowError(
                f"adapt.target_labeled_per_class: {len(labeled)} labeled target images cannot "
                f"be shared by {world.size} processes; raise it or use fewer processes"
            )
    return sizes


class _Progress:
    """Running sums of logged scalars for one epoch, read from the device only at sync points."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def means(self, device: torch.device) -> dict[str, float]:
        """Epoch means over every process (a collective: all processes call it together)."""
        names = sorted(self.sums)
        count = torch.tensor(float(self.count), device=device)
        totals = all_reduce(torch.stack([*(self.sums[n].to(device) for n in names), count]))
        *totals, count = totals.tolist()
        return {name: total / max(1.0, count) for name, total in zip(names, totals, strict=True)}


def _best_by_validator(history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per validator, the trained epoch with the highest score (the earliest on ties)."""
    trained = [r for r in history if r["epoch"] > 0] or history[:1]
    best = {}
    for name in trained[0]["scores"]:
        record = max(trained, key=lambda r: (r["scores"][name], -r["epoch"]))
        best[name] = {"epoch": record["epoch"], "score": record["scores"][name]}
    return best


def _log_epoch(live: Any, record: dict[str, Any]) -> None:
    if live is None:
        return
    for name, value in record["losses"].items():
        live.log_metric(f"train/{name}", value)
    for name, value in record["scores"].items():
        live.log_metric(f"select/{name}", value)
    if record.get("images_per_second"):
        live.log_metric("speed/images_per_second", record["images_per_second"])
    if record.get("peak_memory_mb"):
        live.log_metric("speed/peak_gpu_memory_mb", record["peak_memory_mb"])
    live.next_step()


def _load_state(store: CheckpointStore, world: World, device: torch.device) -> dict | None:
    """The resumable state; rank 0 decides (and discards stale state), the others follow."""
    state = store.load() if world.is_main else None
    if not world.is_distributed:
        return state
    resume = all_reduce(torch.tensor(float(state is not None), device=device), op="max")
    if not world.is_main and float(resume):
        state = load_torch(store.state_path)
    return state


def _data_parallel(method: Method, device: torch.device) -> torch.nn.Module:
    """The method wrapped for gradient averaging over processes."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(method, device_ids=device_ids)


def _peak_memory_mb(device: torch.device) -> float | None:
    """The largest peak of GPU memory allocated by any process since the last reset."""
    if device.type != "cuda":
        return None
    peak = torch.tensor(float(torch.cuda.max_memory_allocated(device)), device=device)
    return float(all_reduce(peak, op="max")) / 2**20


def loop_settings(params: TrainingParams, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast?, channels_last?) for this device."""
    autocast = params.amp == "bf16" or (params.amp == "auto" and device.type == "cuda")
    channels_last = params.channels_last == "on" or (
        params.channels_last == "auto" and device.type == "cuda"
    )
    return autocast, channels_last
