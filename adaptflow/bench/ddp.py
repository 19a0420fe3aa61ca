"""Data-parallel agreement: per method that trains, how far two gloo processes end from one.

Trains the small run of tests/helpers/ddp_worker.py (a toy two-class image task on CPU) once in one
process and once data-parallel in two gloo processes, and records the largest absolute
difference of the final weights, of the per-epoch losses and of the validator scores, measured
as tests/training/test_distributed.py measures them (it asserts 1e-4 for finetune and dann).

    python -m adaptflow.bench ddp --json results/ddp_agreement.json   # every method but source_only
    python -m adaptflow.bench ddp --methods finetune dann

It runs from a source checkout only: the worker is the test suite's own, so that the benchmark
measures exactly what the test asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from adaptflow.bench.common import RunRecord
from adaptflow.bench.tables import ddp_table
from adaptflow.methods.base import all_methods
from adaptflow.training.distributed import launch

ROOT = Path(__file__).resolve().parents[2]  # the repository (tests/ beside adaptflow/)
TOLERANCE = 1e-4  # what tests/training/test_distributed.py asserts for finetune and dann
WORKER = ["-m", "tests.helpers.ddp_worker"]
# besides every method with the main loader: the second case the test runs (6 steps in
# gradient-accumulation groups of 4 and 2, DataLoader workers)
EXTRA_CASES = [("dann", 4, "workers")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", nargs="*", default=None, help="default: every method")
    parser.add_argument("--json", type=Path, help="also write the figures here")


def run(args: argparse.Namespace) -> None:
    record = RunRecord(Path.cwd())
    methods = args.methods or sorted(set(all_methods()) - {"source_only"})  # trains nothing
    cases = [(m, 1, "main") for m in methods]
    cases += [case for case in EXTRA_CASES if case[0] in methods]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )  # the worker processes import tests.helpers.ddp_worker from here
    results = {
        "settings": {
            "tolerance": TOLERANCE,
            "summary": "One process against two gloo processes on CPU, the same global "
            "batches, per-epoch losses, validator scores and final weights compared "
            "(`tests/helpers/ddp_worker.py`: a toy two-class task, 2 epochs).",
        },
        "cases": [compare(*case) for case in cases],
    }
    if args.json:
        record.write(args.json, results)
    print("\n" + ddp_table(results))
    if any("error" in case for case in results["cases"]):
        raise SystemExit(1)


def compare(method: str, grad_accum_steps: int, loader: str) -> dict:
    """Train the worker's run on one and on two processes; the largest differences."""
    case = {"method": method, "grad_accum_steps": grad_accum_steps, "loader": loader}
    options = ["--grad-accum-steps", str(grad_accum_steps), "--loader", loader]
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="adaptflow-ddp-") as scratch:
        os.chdir(scratch)  # the worker runs as a stage would, in a scratch project
        try:
            single = subprocess.run(
                [sys.executable, *WORKER, method, "one.pt", *options],
                capture_output=True,
                text=True,
            )
            if single.returncode != 0:
                return {**case, "error": _last_line(single.stderr)}
            try:
                launch([*WORKER, method, "two.pt", *options], 2)
            except (SystemExit, Exception) as error:  # recorded in the results, not hidden
                return {**case, "error": f"two processes: {error}"}
            one, two = (torch.load(name, weights_only=True) for name in ("one.pt", "two.pt"))
        finally:
            os.chdir(previous)
    case.update(differences(one, two))
    print(f"{method:12s} weights {case['max_weight_diff']:.1e}", flush=True)
    return case


def differences(one: dict, two: dict) -> dict:
    """The largest absolute differences between the two runs' records."""
    losses = scores = 0.0
    for (losses_1, scores_1), (losses_2, scores_2) in zip(
        one["history"], two["history"], strict=True
    ):
        losses = max([losses, *(abs(losses_1[k] - losses_2[k]) for k in losses_1)])
        scores = max([scores, *(abs(scores_1[k] - scores_2[k]) for k in scores_1)])
    weights = max(
        (two["weights"][name].float() - value.float()).abs().max().item()
        for name, value in one["weights"].items()
        if value.numel()
    )
    return {"max_weight_diff": weights, "max_loss_diff": losses, "max_score_diff": scores}


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "failed without output"
