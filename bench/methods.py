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
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from adaptflow import paths
from adaptflow.adaptation import adapt
from adaptflow.data.pools import load_pool
from adaptflow.devices import resolve_device
from adaptflow.evaluate import score
from adaptflow.methods.base import all_methods
from adaptflow.models import save_classifier
from adaptflow.params import Params, load_params, parse_params
from adaptflow.source_model import train_source_model


def with_changes(params: Params, **sections: dict) -> Params:
    raw = params.model_dump(by_alias=True)
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return parse_params(raw)


def with_overrides(params: Params, overrides: list[str]) -> Params:
    """Apply `dotted.key=value` overrides (values parsed as YAML), like `dvc exp run -S`."""
    raw = params.model_dump(by_alias=True)
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return parse_params(raw)


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * spread:4.1f}"


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
    with tempfile.TemporaryDirectory(prefix="adaptflow-bench-") as scratch:
        os.chdir(scratch)  # the library reads data/cache and writes scratch state relative to here
        paths.CACHE.parent.mkdir(parents=True)
        os.symlink(project / paths.CACHE, paths.CACHE)
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
    os.chdir(project)
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
