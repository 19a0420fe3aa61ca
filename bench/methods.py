"""Every adaptation method on the embedded demo, several seeds: target accuracy, macro-F1, time.

Uses the decoded demo cache of this workspace (run `dvc repro prepare` first) and params.yaml,
varying only `seed` (source model and adaptation) and `adapt.method`. Each run selects its
checkpoint with `selection.validator`, without target labels; target test labels are read only
to score the selected model, as the evaluate stage does.

    python bench/methods.py                         # all methods, seeds 0 1 2
    python bench/methods.py --methods dann shot --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from adaptflow import paths
from adaptflow.adaptation import adapt
from adaptflow.bench.common import mean_std, scratch_project, with_changes, with_overrides
from adaptflow.data.pools import load_pool
from adaptflow.devices import resolve_device
from adaptflow.evaluate import score
from adaptflow.methods.base import all_methods
from adaptflow.models import save_classifier
from adaptflow.params import load_params
from adaptflow.source_model import train_source_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="params overrides, e.g. adapt.epochs=10",
    )
    parser.add_argument("--json", type=Path, help="also write the per-run rows here")
    args = parser.parse_args()
    project = Path.cwd()
    base = with_overrides(load_params(project / paths.PARAMS), args.set)
    methods = args.methods or sorted(all_methods())
    device = resolve_device(base.device)
    target_test = load_pool(project / paths.TARGET_TEST, "target test", labeled=True)

    rows = []
    with scratch_project(project):
        for seed in args.seeds:
            seeded = with_changes(base, seed=seed)
            source = train_source_model(seeded, device)
            save_classifier(paths.SOURCE_MODEL, source.model)
            source_only = score(source.model, target_test, device, 256, 15)
            print(
                f"seed {seed}: source-only target accuracy {source_only.accuracy:.4f}", flush=True
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
                        "seed": seed,
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
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))

    validator = base.selection.validator
    print(f"\nMNIST -> UCI digits, {len(args.seeds)} seed(s), checkpoints selected by {validator}")
    print(
        "| method | target accuracy (%) | macro-F1 (%) | gain vs source-only (points) | time (s) |"
    )
    print("|---|---:|---:|---:|---:|")
    for method in methods:
        runs = [r for r in rows if r["method"] == method]
        gains = [r["target_accuracy"] - r["source_only"] for r in runs]
        print(
            f"| {method} | {mean_std([r['target_accuracy'] for r in runs])} | "
            f"{mean_std([r['target_macro_f1'] for r in runs])} | "
            f"{100 * statistics.mean(gains):+.1f} | "
            f"{statistics.mean(r['seconds'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
