"""Data-parallel training over processes: torchrun launch, process group, reductions.

`distributed.nproc_per_node > 1` makes the pretrain and adapt stages relaunch themselves under
torchrun's launcher (one process per GPU, or per CPU share with gloo); a stage started by
`torchrun` directly (several nodes) joins the group torchrun set up. Either way:

- batch sizes in params.yaml are global: every process draws the same global batch per domain and
  keeps its rows (adaptflow.training.streams), augmentation parameters are drawn for the global
  batch (adaptflow.data.augment), BatchNorm statistics are synchronised
  (adaptflow.training.sync_batchnorm) and DistributedDataParallel averages gradients. For methods
  whose losses are means over images (finetune, dann, fixmatch, tent) a run on N processes follows
  the single-process run up to floating-point reduction order (tests/training/test_distributed.py:
  weights within 1e-4 after two epochs), for backbones without dropout or stochastic depth (those
  draw per-process masks, so runs on different process counts differ by their noise).
  Terms over whole-batch statistics are computed per process, as in every DDP implementation
  of them: CDAN's entropy weights, MMD (dan), CORAL's covariances, MCC's class correlation,
  SHOT's diversity; such runs agree statistically.
- rank 0 alone scores epochs, writes checkpoints, logs and outputs; per-epoch losses and
  img/s are all-reduced first, so what it logs covers every process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from adaptflow.core.devices import resolve_device
from adaptflow.core.errors import EXIT_USER_ERROR, AdaptflowError
from adaptflow.core.params import DistributedParams, Params

log = logging.getLogger(__name__)
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The process group this process belongs to, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def in_torchrun_worker() -> bool:
    """Whether torchrun (or its launcher API) started this process."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch(arguments: list[str], nproc: int) -> None:
    """Run `python <arguments>` in `nproc` processes on this machine, as `torchrun --standalone`.

    The rendezvous listens on 127.0.0.1. Rank 0 prints a user error as its one line; the
    launch then exits 2 like a single-process stage. Other failures (a crash, a kill) exit 1.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        local_addr="127.0.0.1",
        max_restarts=0,
        start_method="spawn",
    )
    # torch's agent logs each worker failure with a traceback; the worker's own line says it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    log.info("launching %d processes: python %s", nproc, " ".join(arguments))
    # as torchrun does: the processes share the cores rather than each taking all of them
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads or str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        elastic_launch(config, sys.executable)("-u", *arguments)
    except ChildFailedError as error:
        codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
        if codes.get(0) == EXIT_USER_ERROR:
            raise SystemExit(EXIT_USER_ERROR) from None  # rank 0 printed the line
        # processes the agent stopped after the first failure report a signal (negative code)
        failed = {rank: code for rank, code in codes.items() if code > 0} or codes
        rank, code = min(failed.items())
        if code == EXIT_USER_ERROR:
            raise AdaptflowError(
                f"distributed: process {rank} of {nproc} stopped on the error it logged above"
            ) from None
        print(f"process {rank} of {nproc} failed with exit code {code}", file=sys.stderr)
        raise SystemExit(1) from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]


def _check_before_launch(params: Params, stage: str) -> None:
    """Refuse, before starting any process, what would stop every process (or hang some)."""
    nproc = params.distributed.nproc_per_node
    device = resolve_device(params.device)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise AdaptflowError(
            f"distributed.nproc_per_node={nproc}: only {torch.cuda.device_count()} GPUs are "
            "visible; use at most one process per GPU"
        )
    training = getattr(params, stage)
    for key in ("batch_size", "target_batch_size"):
        check_even_split(stage, key, getattr(training, key), nproc)


def check_even_split(stage: str, key: str, size: int, nproc: int) -> None:
    """Refuse a global batch size that `nproc` processes cannot share equally."""
    if size % nproc:
        raise AdaptflowError(
            f"{stage}.{key}={size} does not split evenly over {nproc} processes "
            f"(distributed.nproc_per_node); use a multiple of {nproc}"
        )


def relaunched(params: Params, stage: str, script: str, args: tuple[str, ...] = ()) -> bool:
    """Launch `script` (with `args`) under torchrun when params ask for several processes and
    this is not already a worker; True when it did (the workers then did the caller's work)."""
    if params.distributed.nproc_per_node <= 1 or in_torchrun_worker():
        return False
    _check_before_launch(params, stage)
    launch([script, *args], params.distributed.nproc_per_node)
    return True


@contextlib.contextmanager
def process_group(device_name: str, settings: DistributedParams) -> Iterator[torch.device]:
    """The training device; inside a torchrun worker, also the joined process group.

    On CUDA each process takes the GPU of its local rank (`device: auto` or `cuda`).
    """
    device = resolve_device(device_name)
    if not in_torchrun_worker():
        yield device
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise AdaptflowError(
                f"distributed.nproc_per_node: process {local_rank} has no GPU "
                f"({torch.cuda.device_count()} visible); use at most one process per GPU"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = settings.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise AdaptflowError("distributed.backend: nccl needs CUDA devices; use gloo on CPU")
    dist.init_process_group(
        backend,
        device_id=device if device.type == "cuda" else None,
        timeout=COLLECTIVE_TIMEOUT,  # others wait in a collective while rank 0 scores and saves
    )
    try:
        yield device
    finally:
        dist.destroy_process_group()


def all_reduce(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """`values` summed (or maxed) over every process; unchanged in a world of one."""
    if not current_world().is_distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return values
