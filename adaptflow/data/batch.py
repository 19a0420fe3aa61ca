"""What one training step receives from one domain: a `Batch`, and which `Rows` of it are ours.

Under data-parallel training each process holds some rows of a global batch (`Rows`); the
streams (adaptflow.training.streams) produce batches, augmentation draws its random parameters for
the whole global batch and keeps a process's rows, and methods consume batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Rows:
    """The rows [start, start + count) of a global batch of `total` images one process holds."""

    start: int
    count: int
    total: int

    @classmethod
    def whole(cls, count: int) -> Rows:
        return cls(0, count, count)

    def of(self, values: torch.Tensor) -> torch.Tensor:
        """This process's rows of per-image values drawn for the global batch."""
        return values[self.start : self.start + self.count]


@dataclass
class Batch:
    """A batch from one domain, on the training device."""

    images: torch.Tensor  # augmented, float in [0, 1]
    raw: torch.Tensor  # the same images, not augmented
    index: torch.Tensor  # rows in the pool (to look up per-sample state such as pseudo-labels)
    labels: torch.Tensor | None = None  # None for unlabeled target data
    rows: Rows | None = None  # which rows of the global batch these are (data-parallel runs)
