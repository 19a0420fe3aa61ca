"""One small training run, for tests/training/test_distributed.py:
`python -m tests.helpers.ddp_worker ARGS`.

Run directly it trains in one process; launched by `adaptflow.training.distributed.launch` it trains
data-parallel (gloo on CPU). Rank 0 saves the per-epoch losses and scores, the initial and
final weights and the names of the trainable parameters to OUT.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from adaptflow.core.devices import seed_everything
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import AdaptParams, DistributedParams
from adaptflow.entry.stage import run_entry_point
from adaptflow.methods.base import method_class, method_options
from adaptflow.models.classifier import Classifier
from adaptflow.training.checkpoints import CheckpointStore
from adaptflow.training.distributed import process_group
from adaptflow.training.engine import TrainingData, fit
from adaptflow.training.validators import Selector, usable_validators
from tests.helpers.toy import bars_pool, toy_spec


def run(method_name: str, out: Path, grad_accum_steps: int, loader: str) -> None:
    torch.set_num_threads(1)  # two processes share the two cores of the CI machine
    with process_group("cpu", DistributedParams()) as device:
        seed_everything(0)
        params = AdaptParams(
            method=method_name,
            epochs=2,
            steps_per_epoch=6,
            batch_size=16,
            target_batch_size=24,
            lr=0.02,
            grad_accum_steps=grad_accum_steps,
            loader=loader,
            workers=1,
            augment={"translate": 0.05, "rotate": 5, "scale": 0.05},
        )
        method_type = method_class(method_name)
        method = method_type(Classifier(toy_spec()), params, method_options(method_name, {}))
        initial = {k: v.detach().clone() for k, v in method.state_dict().items()}
        trainable = [name for name, p in method.named_parameters() if p.requires_grad]
        source = bars_pool("source", 96)
        target = bars_pool("target", 72, labeled=False, seed=2, shift=0.2)
        selector = Selector(
            usable_validators(has_source=True, has_target=True),
            bars_pool("val", 32, seed=1),
            target,
            device,
            64,
            100,
        )
        result = fit(
            method,
            TrainingData(source=source, target=target),
            params,
            stage="adapt",
            seed=0,
            device=device,
            selector=selector,
            store=CheckpointStore(out.with_suffix(".store"), "f"),
        )
        if result is not None:
            torch.save(
                {
                    "history": [(r["losses"], r["scores"]) for r in result.history],
                    "weights": {k: v.detach().clone() for k, v in method.state_dict().items()},
                    "initial": initial,
                    "trainable": trainable,
                },
                out,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("out", type=Path)
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--loader", default="main")
    parser.add_argument("--fail-on-rank", type=int, default=None, help="a user error there")
    args = parser.parse_args()
    if args.fail_on_rank == int(os.environ.get("RANK", "0")):
        raise AdaptflowError(f"a user error on rank {args.fail_on_rank} only")
    run(args.method, args.out, args.grad_accum_steps, args.loader)


if __name__ == "__main__":
    run_entry_point(
        main, parse_arguments=False, check_params=False
    )  # as a stage: a user error is one line and exit 2
