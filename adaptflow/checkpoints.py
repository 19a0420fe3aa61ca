"""Resumable training state and candidate weights of one training run, in a scratch directory.

`fit` saves the state after every epoch and the weights of each epoch some validator
currently prefers (a candidate); the state is valid only for the inputs it was made from
(a fingerprint of params and files), so changed inputs start afresh.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from adaptflow.io import load_torch, save_torch

log = logging.getLogger(__name__)


def candidate_file(epoch: int) -> str:
    """File name of an epoch's weights (in the scratch store and in models/candidates/)."""
    return f"epoch_{epoch:04d}.pt"


class CheckpointStore:
    """Resumable training state in a scratch directory, valid only for one input fingerprint."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    @property
    def state_path(self) -> Path:
        return self.directory / "state.pt"

    def candidate_path(self, epoch: int) -> Path:
        return self.directory / candidate_file(epoch)

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

    def save_candidate(self, epoch: int, model: nn.Module) -> Path:
        """Save `model`'s weights (on the CPU) as the candidate of `epoch`."""
        path = self.candidate_path(epoch)
        save_torch(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        return path

    def prune(self, keep: set[int]) -> None:
        """Delete candidate weights no validator points at any more."""
        kept = {self.state_path, *(self.candidate_path(epoch) for epoch in keep)}
        for path in self.directory.glob("*.pt"):  # the state and the candidates
            if path not in kept:
                path.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
