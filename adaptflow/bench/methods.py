"""Every adaptation method on the embedded demo, several seeds: target accuracy, macro-F1, time.

Uses the decoded demo cache of this workspace (run `dvc repro prepare` first) and params.yaml,
varying only `seed` (source model and adaptation) and `adapt.method`. Each run selects its
checkpoint with `selection.validator`, without target labels; target test labels are read only
to score the selected model, as the evaluate stage does.

    python -m adaptflow.bench methods --json results/methods.json   # seeds 0 1 2 (make bench)
    python -m adaptflow.bench methods --methods dann shot --seeds 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from adaptflow.adapt.one_method import adapt
from adaptflow.bench.common import RunRecord, scratch_project, with_changes, with_overrides
from adaptflow.bench.tables import methods_table
from adaptflow.core import paths
from adaptflow.core.devices import resolve_device
from adaptflow.core.params import Params, load_params
from adaptflow.data.pools import load_pool
from adaptflow.evaluation.metrics import score
from adaptflow.methods.base import all_methods
from adaptflow.models.classifier import save_classifier
from adaptflow.source_model.pretrain import train_source_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="params overrides, e.g. adapt.epochs=10",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the runs here, after each seed (results/methods.json)"
    )


def run(args: argparse.Namespace) -> None:
    project = Path.cwd()
    record = RunRecord(project)
    base = with_overrides(load_params(project / paths.PARAMS), args.set)
    methods = args.methods or sorted(all_methods())
    settings = {
        "methods": methods,
        "seeds": [],  # the seeds that finished: a stopped run keeps what it measured
        "overrides": args.set,
        "validator": base.selection.validator,
    }
    results = {"benchmark": "MNIST -> UCI digits (the embedded demo)", "settings": settings}
    rows = []
    for seed in args.seeds:
        rows += run_seed(project, with_changes(base, seed=seed), methods)
        settings["seeds"].append(seed)
        results["rows"] = rows
        if args.json:
            record.write(args.json, results)
    print("\n" + methods_table(results))


def run_seed(project: Path, seeded: Params, methods: list[str]) -> list[dict]:
    """A source model for this seed, then each method adapting it: one row per method."""
    device = resolve_device(seeded.device)
    target_test = load_pool(project / paths.TARGET_TEST, "target test", labeled=True)
    rows = []
    with scratch_project(project):
        source = train_source_model(seeded, device)
        save_classifier(paths.SOURCE_MODEL, source.model)
        source_only = score(source.model, target_test, device, 256, 15)
        print(
            f"seed {seeded.seed}: source-only target accuracy {source_only.accuracy:.4f}",
            flush=True,
        )
        for method in methods:
            params = with_changes(seeded, adapt={"method": method})
            started = time.perf_counter()
            result = adapt(params, device)
            seconds = time.perf_counter() - started
            adapted = score(result.adapted_model, target_test, device, 256, 15)
            rows.append(
                {
                    "method": method,
                    "seed": seeded.seed,
                    "target_accuracy": adapted.accuracy,
                    "target_macro_f1": adapted.macro_f1,
                    "source_only": source_only.accuracy,
                    "selected_epoch": result.selected_epoch,
                    "seconds": seconds,
                    "fell_back": result.fell_back_to_source,
                }
            )
            print(
                f"  {method:12s} {adapted.accuracy:.4f} (epoch {result.selected_epoch}, "
                f"{seconds:.0f} s)",
                flush=True,
            )
    return rows
