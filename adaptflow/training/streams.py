"""One epoch of batches from one training split, for one process, on the training device.

Each step takes a global batch from a seeded order of the split (successive permutations, so
the smaller domain cycles while the larger makes one pass); a data-parallel process keeps
its rows of it (`Rows`), which is what makes N processes see the batches one process would.

How the rows reach the device (`loader`):
  device   the split was copied to the GPU once; a batch is an index_select there
  main     the training process gathers the rows from the (memory-mapped) cache and copies
           them through pinned memory without blocking
  workers  DataLoader worker processes gather batches ahead from the memory-mapped cache into
           pinned memory, for splits too large for memory; the device copy does not block
Augmentation always runs on the device, on the batch as a whole.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from adaptflow.data.augment import RandomAffine
from adaptflow.data.batch import Batch, Rows
from adaptflow.data.pools import ImagePool
from adaptflow.training.distributed import World

log = logging.getLogger(__name__)
DEVICE_MEMORY_SHARE = 0.25  # loader auto: splits may take this much of free GPU memory


def epoch_order(size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` indices: successive random permutations of range(size)."""
    repeats = -(-count // size)
    return torch.cat([torch.randperm(size, generator=generator) for _ in range(repeats)])[:count]


def process_rows(batch_size: int, world: World) -> Rows:
    """This process's contiguous share of a global batch (sizes differ by at most one)."""
    start = world.rank * batch_size // world.size
    stop = (world.rank + 1) * batch_size // world.size
    return Rows(start, stop - start, batch_size)


def choose_loader(setting: str, pools: list[ImagePool], device: torch.device) -> str:
    """Resolve `loader: auto`: on a GPU, `device` if the splits fit its share of free memory."""
    if setting != "auto":
        return setting
    if device.type != "cuda":
        return "main"
    free, _ = torch.cuda.mem_get_info(device)
    needed = sum(p.images.nbytes for p in pools)
    loader = "device" if needed <= DEVICE_MEMORY_SHARE * free else "workers"
    log.info("loader: %s (%.0f MiB of images, %.0f MiB free)", loader, needed / 2**20, free / 2**20)
    return loader


class _StepRows(Dataset):
    """Item s: (index, uint8 images, labels) of this process's rows of global batch s."""

    def __init__(self, pool: ImagePool, order: torch.Tensor, batch_size: int, rows: Rows):
        self.pool, self.order, self.batch_size, self.rows = pool, order, batch_size, rows

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def index(self, step: int) -> torch.Tensor:
        start = step * self.batch_size + self.rows.start
        return self.order[start : start + self.rows.count]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        index = self.index(step)
        images = self.pool.images.index_select(0, index)
        labels = None if self.pool.labels is None else self.pool.labels.index_select(0, index)
        return index, images, labels


class DomainStream:
    """`steps` augmented batches of one split for this process, in the epoch's order."""

    def __init__(
        self,
        pool: ImagePool,
        batch_size: int,
        steps: int,
        generator: torch.Generator,
        *,
        device: torch.device,
        augment: RandomAffine,
        channels_last: bool,
        world: World,
        loader: str,
        workers: int,
    ) -> None:
        self.rows = process_rows(batch_size, world)
        order = epoch_order(len(pool), batch_size * steps, generator)
        self.steps = _StepRows(pool, order, batch_size, self.rows)
        self.device, self.augment, self.channels_last = device, augment, channels_last
        self.loader, self.workers = loader, workers

    def _raw_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(index, images as float in [0, 1] on the device, labels) per step."""
        if self.loader != "workers":  # `device` pools already live on the device
            for step in range(len(self.steps)):
                index = self.steps.index(step)
                yield (index, *self.steps.pool.gather(index, self.device))
            return
        cuda = self.device.type == "cuda"
        batches = DataLoader(
            self.steps,
            batch_size=None,  # items are whole batches
            num_workers=self.workers,
            pin_memory=cuda,
            prefetch_factor=4,
            generator=torch.Generator(),  # its seed draw must not advance the global RNG
        )
        for index, images, labels in batches:
            images = images.to(self.device, non_blocking=cuda).float().div_(255.0)
            labels = None if labels is None else labels.to(self.device, non_blocking=cuda)
            yield index, images, labels

    def __iter__(self) -> Iterator[Batch]:
        for index, raw, labels in self._raw_batches():
            images = self.augment(raw, self.rows)
            if self.channels_last:
                raw = raw.contiguous(memory_format=torch.channels_last)
                images = images.contiguous(memory_format=torch.channels_last)
            yield Batch(images=images, raw=raw, index=index, labels=labels, rows=self.rows)


def steps_per_epoch(configured: int, splits: list[tuple[int, int]]) -> int:
    """The configured steps, or enough for one pass over the largest split ([(size, batch)])."""
    return configured or max(math.ceil(size / batch) for size, batch in splits)
