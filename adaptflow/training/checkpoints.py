"""Resumable training state and epoch snapshots of one training run, in a scratch directory.

`fit` saves the state after every epoch and the weights of each epoch some validator
currently prefers (a snapshot); the state is valid only for the inputs it was made from
(a fingerprint of params and files), so changed inputs start afresh. An unreadable store (a
disk that filled up, a copy cut short) is set aside for inspection and training starts afresh.
The store outlives `fit`: a stage discards it only once its outputs are written, so a stage that
fails or is killed while writing them resumes after the last epoch instead of training again.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import load_torch, save_torch

log = logging.getLogger(__name__)
AFRESH = "training starts afresh"


def snapshot_file(epoch: int) -> str:
    """File name of an epoch's snapshot (in the scratch store and in models/selection/)."""
    return f"epoch_{epoch:04d}.pt"


def checkpoint_directory(stage: str) -> Path:
    """The scratch directory of a training stage's resumable state."""
    return paths.CHECKPOINTS / stage


def discard_checkpoints(stage: str) -> None:
    """Delete a stage's resumable state: call it once the stage's outputs are written."""
    shutil.rmtree(checkpoint_directory(stage), ignore_errors=True)


class CheckpointStore:
    """Resumable training state in a scratch directory, valid only for one input fingerprint."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    @property
    def state_path(self) -> Path:
        return self.directory / "state.pt"

    def snapshot_path(self, epoch: int) -> Path:
        return self.directory / snapshot_file(epoch)

    def load(self) -> dict[str, Any] | None:
        """The saved state if it belongs to this fingerprint; stale state is discarded and
        unreadable state set aside (with a warning), so training starts afresh."""
        if not self.state_path.is_file():
            return None
        try:
            state = self._read()
        except AdaptflowError as error:
            kept = self._set_aside()
            log.warning("%s (the store is kept as %s for inspection)", error, kept)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info("discarding checkpoints of other inputs in %s", self.directory)
            self.clear()
            return None
        return state

    def _read(self) -> dict[str, Any]:
        """The state, once it and every snapshot beside it load (snapshots lazily, mmap)."""
        state = load_torch(self.state_path, fix=AFRESH)
        if not isinstance(state, dict):
            raise AdaptflowError(f"{self.state_path}: not a training state; {AFRESH}")
        for snapshot in sorted(self.directory.glob("epoch_*.pt")):
            load_torch(snapshot, mmap=True, fix=AFRESH)
        return state

    def _set_aside(self) -> Path:
        """Rename the store to `<stage>.unreadable-<UTC time>` beside it; return the new name."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = self.directory.with_name(f"{self.directory.name}.unreadable-{stamp}")
        suffix = 1
        while kept.exists():  # two in one second
            suffix += 1
            kept = kept.with_name(f"{self.directory.name}.unreadable-{stamp}-{suffix}")
        os.replace(self.directory, kept)
        return kept

    def save(self, state: dict[str, Any]) -> None:
        save_torch(self.state_path, {**state, "fingerprint": self.fingerprint})

    def save_snapshot(self, epoch: int, model: nn.Module) -> Path:
        """Save `model`'s weights (on the CPU) as the snapshot of `epoch`."""
        path = self.snapshot_path(epoch)
        save_torch(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        return path

    def prune(self, keep: set[int]) -> None:
        """Delete snapshots no validator points at any more."""
        kept = {self.state_path, *(self.snapshot_path(epoch) for epoch in keep)}
        for path in self.directory.glob("*.pt"):  # the state and the snapshots
            if path not in kept:
                path.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
