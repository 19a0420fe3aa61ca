"""The one training loop: devices, precision, checkpoint/resume, progress and logging.

`fit` drives any `Method` (adaptflow.methods): per step it draws a source batch, a target
batch and, in the semi-supervised setting, a labeled target batch; asks the method for its
losses; and does backward, optimizer and scheduler. After each epoch it scores the model with
the label-free validators, keeps the best epoch per validator, and saves a resumable state.

Determinism: each epoch reseeds every RNG from (seed, epoch), so an epoch's data order,
augmentation and dropout depend only on the state at its start. A run resumed from the
checkpoint of epoch k therefore ends with the same weights as one that never stopped (CPU).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from adaptflow.data.augment import RandomAffine
from adaptflow.data.pools import ImagePool
from adaptflow.data.streams import DomainStream, choose_loader, steps_per_epoch
from adaptflow.devices import epoch_seed, seed_everything
from adaptflow.distributed import World, all_reduce, check_even_split, current_world
from adaptflow.errors import AdaptflowError
from adaptflow.io import load_torch, save_torch
from adaptflow.methods.base import Method
from adaptflow.params import TrainingParams
from adaptflow.selection import Selector
from adaptflow.sync_batchnorm import synchronize_batchnorm

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
    candidates: dict[int, Path]  # epoch -> model weights file (epochs best for some validator)
    epochs: int
    train_seconds: float
    images_per_second: float
    peak_memory_mb: float | None = None
    processes: int = 1  # data-parallel training processes
    extra: dict[str, Any] = field(default_factory=dict)


class CheckpointStore:
    """Resumable training state in a scratch directory, valid only for one input fingerprint."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    @property
    def state_path(self) -> Path:
        return self.directory / "state.pt"

    def candidate_path(self, epoch: int) -> Path:
        return self.directory / f"epoch_{epoch:04d}.pt"

    def load(self) -> dict[str, Any] | None:
        """The saved state if it belongs to this fingerprint; stale state is discarded."""
        if not self.state_path.is_file():
            return None
        state = load_torch(self.state_path)
        if state.get("fingerprint") != self.fingerprint:
            log.info("discarding checkpoints of other inputs in %s", self.directory)
            self.clear()
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        save_torch(self.state_path, {**state, "fingerprint": self.fingerprint})

    def save_candidate(self, epoch: int, method: Method) -> Path:
        path = self.candidate_path(epoch)
        save_torch(path, {k: v.detach().cpu() for k, v in method.model.state_dict().items()})
        return path

    def prune(self, keep: set[int]) -> None:
        """Delete candidate weights no validator points at any more."""
        for path in self.directory.glob("epoch_*.pt"):
            if int(path.stem.split("_")[1]) not in keep:
                path.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _lr_lambda(kind: str, total_steps: int) -> Callable[[int], float]:
    total = max(1, total_steps)
    if kind == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if kind == "inv":  # the annealing of DANN (Ganin & Lempitsky, 2015)
        return lambda step: (1 + 10 * min(step, total) / total) ** -0.75
    return lambda step: 1.0


def build_optimizer(
    groups: list[dict], params: TrainingParams, device: torch.device
) -> torch.optim.Optimizer | None:
    """SGD (Nesterov) or AdamW over the method's groups; fused kernels on CUDA."""
    groups = [g for g in groups if any(p.requires_grad for p in g["params"])]
    if not groups:
        return None
    fused = device.type == "cuda"
    if params.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=params.lr, weight_decay=params.weight_decay, fused=fused
        )
    return torch.optim.SGD(
        groups,
        lr=params.lr,
        momentum=params.momentum,
        weight_decay=params.weight_decay,
        nesterov=params.momentum > 0,
        fused=fused,
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
) -> FitResult | None:
    """Train `method` for its epochs, scoring every epoch; resume from `store` when possible.

    In a data-parallel run every process trains; rank 0 alone scores, saves and logs, and
    gets the result (other ranks get None). `sync_batchnorm`: BatchNorm statistics over the
    global batch rather than each process's rows.
    """
    world = current_world()
    autocast, channels_last = loop_settings(params, device)
    selector.autocast = autocast
    method.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if world.is_distributed and sync_batchnorm:
        synchronize_batchnorm(method, device)
    if params.compile:
        method.model.backbone.compile()
    epochs = method.epochs(params.epochs)
    batch_sizes = _batch_sizes(stage, data, params, world)
    pools = {
        name: pool
        for name, pool in (
            ("source", data.source),
            ("target", data.target),
            ("target_labeled", data.target_labeled),
        )
        if name in batch_sizes
    }
    steps = steps_per_epoch(
        params.steps_per_epoch,
        [(len(pools[n]), batch_sizes[n]) for n in ("source", "target") if n in pools],
    )
    loader = choose_loader(params.loader, list(pools.values()), device)
    if loader == "device":
        pools = {name: pool.to(device) for name, pool in pools.items()}
    optimizer = build_optimizer(method.trainable_groups(), params, device)
    scheduler = None
    if optimizer is not None:
        total = epochs * steps // params.grad_accum_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(params.schedule, total))
    augment = RandomAffine(params.augment)

    state = _load_state(store, world, device)
    if state is None:
        scores = selector.scores(method.model) if world.is_main else {}
        history = [
            {"epoch": 0, "losses": {}, "scores": scores, "seconds": 0.0, "images_per_second": 0.0}
        ]
        start = 1
    else:
        method.load_state_dict(state["method"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
        log.info("%s: resuming after epoch %d from %s", stage, state["epoch"], store.directory)
    for record in history:
        _log_epoch(live, record)
    trainer = method
    if world.is_distributed and optimizer is not None:
        trainer = _data_parallel(method, device)

    last_finite = math.nan
    for epoch in range(start, epochs + 1):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seed_everything(epoch_seed(seed, epoch))
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        method.begin_epoch(epoch, data.target, device)
        method.train()
        streams = {
            name: iter(
                DomainStream(
                    pool,
                    batch_sizes[name],
                    steps,
                    generator,
                    device=device,
                    augment=augment,
                    channels_last=channels_last,
                    world=world,
                    loader=loader,
                    workers=params.workers,
                )
            )
            for name, pool in pools.items()
        }
        progress = _Progress()
        images, started = 0, time.perf_counter()
        epoch_steps = steps if method.takes_steps else 0
        bar = tqdm(
            range(epoch_steps),
            desc=f"{stage} {epoch}/{epochs}",
            leave=False,
            disable=None if world.is_main else True,
        )
        for step in bar:
            method.progress = ((epoch - 1) * steps + step) / (epochs * steps)
            batches = {name: next(stream) for name, stream in streams.items()}
            images += sum(b.images.shape[0] for b in batches.values())
            accumulating = (step + 1) % params.grad_accum_steps != 0
            # gradients are averaged over processes on the last micro-step only
            no_sync = trainer.no_sync() if accumulating and trainer is not method else None
            with no_sync or contextlib.nullcontext():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    output = trainer(
                        batches.get("source"), batches.get("target"), batches.get("target_labeled")
                    )
                if not output.losses:
                    continue
                loss = sum(output.losses.values())
                progress.add({**output.losses, **output.logs, "loss": loss})
                if (
                    device.type != "cuda"
                    or (step + 1) % CUDA_SYNC_EVERY == 0
                    or step + 1 == epoch_steps
                ):
                    value = float(progress.sums["loss"]) / progress.count
                    current = float(loss.detach())
                    diverged = not (math.isfinite(current) and math.isfinite(value))
                    if world.is_distributed:  # every rank stops at the same step
                        flag = torch.tensor(float(diverged), device=device)
                        diverged = bool(all_reduce(flag, op="max"))
                    if diverged:
                        raise AdaptflowError(
                            f"{stage}: loss became {current} at epoch {epoch}, step {step + 1} "
                            f"(last finite loss {last_finite:.4g}); lower {stage}.lr or check "
                            "the data"
                        )
                    last_finite = current
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                if optimizer is None or not loss.requires_grad:
                    continue
                (loss / params.grad_accum_steps).backward()
            if not accumulating:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        losses = progress.means(device)  # collectives first: every process takes part
        images = float(all_reduce(torch.tensor(float(images), device=device)))
        peak = _peak_memory_mb(device)
        if not world.is_main:
            continue
        record = {
            "epoch": epoch,
            "losses": losses,
            "scores": selector.scores(method.model),
            "seconds": seconds,
            "images_per_second": images / seconds if seconds > 0 else 0.0,
            "peak_memory_mb": peak,
        }
        history.append(record)
        _log_epoch(live, record)
        log.info(
            "%s epoch %d/%d  %s  |  %s  |  %.0f img/s%s",
            stage,
            epoch,
            epochs,
            "  ".join(f"{k} {v:.4f}" for k, v in record["losses"].items()),
            "  ".join(f"{k} {v:.4f}" for k, v in record["scores"].items()),
            record["images_per_second"],
            f"  |  peak {peak:.0f} MiB" if peak is not None else "",
        )
        best = _best_by_validator(history)
        if any(b["epoch"] == epoch for b in best.values()):
            store.save_candidate(epoch, method)
        store.prune({b["epoch"] for b in best.values()})
        store.save(
            {
                "epoch": epoch,
                "method": method.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer else None,
                "scheduler": scheduler.state_dict() if scheduler else None,
                "history": history,
            }
        )

    if not world.is_main:
        return None
    best = _best_by_validator(history)
    if epochs == 0:
        store.save_candidate(0, method)
    candidates = {b["epoch"]: store.candidate_path(b["epoch"]) for b in best.values()}
    trained = [r for r in history if r["epoch"] > 0]
    train_seconds = sum(r["seconds"] for r in trained)
    total_images = sum(r["images_per_second"] * r["seconds"] for r in trained)
    peaks = [r["peak_memory_mb"] for r in trained if r.get("peak_memory_mb") is not None]
    return FitResult(
        history=history,
        best=best,
        candidates=candidates,
        epochs=epochs,
        train_seconds=train_seconds,
        images_per_second=total_images / train_seconds if train_seconds > 0 else 0.0,
        peak_memory_mb=max(peaks) if peaks else None,
        processes=world.size,
    )
