"""What the training stages (pretrain, adapt) share: one run per process, rank 0's result back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from adaptflow.cli import is_main_process
from adaptflow.distributed import process_group, relaunched
from adaptflow.live import live_logger
from adaptflow.params import Params

Result = TypeVar("Result")


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
