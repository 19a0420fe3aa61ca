"""Hard shifts: every method on every shift of the suite, and how well label-free rules choose.

For each shift of `adaptflow.data.shifts` (ImageFolder trees, decoded like the prepare stage)
and each seed, trains one source model, adapts it with every method (each keeping the epoch
`selection.validator` prefers), then lets every rule of `adaptflow.adapt.rules`
pick one of the adapted models without target labels. Target test labels are read only to
score the models afterwards (the oracle). Prints one table per shift: source-only, each
method's target accuracy, the oracle-best method, each rule's pick and its regret (oracle-best
accuracy minus the pick's), and the label-free warnings a run would carry.

    python -m adaptflow.bench shifts                        # the suite: 4 shifts x 3 seeds
    python -m adaptflow.bench shifts --shifts demo --seeds 0 --methods source_only shot mcc
    python -m adaptflow.bench shifts --score-only           # rescore saved models only

Trained models are kept under --work (resumable: a finished run is not trained again).
Results: --json (results/shifts.json, with the run's record); `make results-shifts` records
it and `make results-docs` puts its tables in docs/results.md (region `shifts`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adaptflow.adapt.diagnostics import accuracy, agreement, effective_classes, method_warnings
from adaptflow.adapt.one_method import Adaptation, adapt
from adaptflow.adapt.portfolio import portfolio_warnings
from adaptflow.adapt.rules import (
    RULES,
    Evidence,
    adapted_voters,
    ensemble_probabilities,
    gather_evidence,
    pick,
)
from adaptflow.bench.common import RunRecord, with_changes, with_overrides
from adaptflow.bench.tables import SCOPES, mean_std, shifts_region, table
from adaptflow.core import paths
from adaptflow.core.devices import resolve_device
from adaptflow.core.io import fingerprint
from adaptflow.core.params import SOURCE_ONLY, Params, PortfolioParams, load_params
from adaptflow.data.cache import CacheSpec, write_cache
from adaptflow.data.manifest import scan_domains
from adaptflow.data.pools import load_pool
from adaptflow.data.shifts import SHIFTS, write_shift
from adaptflow.evaluation.metrics import Scores, score
from adaptflow.methods.base import all_methods, method_class
from adaptflow.models.classifier import load_classifier, save_classifier
from adaptflow.source_model.pretrain import train_source_model

DEFAULT_RULE = PortfolioParams().rule
# small settings that still separate the methods on 2 CPU cores (override with --set)
SETTINGS = [
    "pretrain.epochs=4",
    "pretrain.steps_per_epoch=40",
    "adapt.epochs=5",
    "adapt.steps_per_epoch=25",
    "adapt.batch_size=32",
    "selection.max_samples=500",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shifts", nargs="*", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--methods", nargs="*", default=None, help="default: every method")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path(".adaptflow/bench/shifts"))
    parser.add_argument("--json", type=Path, default=Path("results/shifts.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--score-only", action="store_true", help="no training: rescore only")


@contextlib.contextmanager
def working_in(directory: Path) -> Iterator[None]:
    """The library reads data/cache and writes models/ relative to the working directory."""
    previous = Path.cwd()
    directory.mkdir(parents=True, exist_ok=True)
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def shift_params(base: Params, name: str, channels: int) -> Params:
    return with_changes(base, data={"source": "source", "target": "target", "channels": channels})


def prepare_shift(name: str, work: Path, base: Params) -> tuple[Params, str]:
    """Trees and decoded cache of one shift (once); its params and one-line summary."""
    marker = work / "prepared.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return shift_params(base, name, info["channels"]), info["summary"]
    with working_in(work):
        shift = write_shift(name, Path("."), seed=0)
        params = shift_params(base, name, shift.channels)
        manifest = scan_domains(Path("source"), Path("target"), params.validate.max_pixels)
        spec = CacheSpec(
            image_size=params.data.image_size,
            channels=shift.channels,
            max_pixels=params.validate.max_pixels,
            source_val_fraction=params.data.source_val_fraction,
            target_labeled_per_class=0,
            seed=params.data.seed,
        )
        write_cache(manifest.manifest(), spec)
    marker.write_text(json.dumps({"channels": shift.channels, "summary": shift.summary}))
    return params, shift.summary


def _record(result: Adaptation, seconds: float) -> dict[str, Any]:
    return {
        "selected_epoch": result.selected_epoch,
        "by_validator": {k: int(v["epoch"]) for k, v in result.fit.best.items()},
        "negative_transfer_suspected": result.negative_transfer_suspected,
        "fell_back": result.fell_back_to_source,
        "seconds": round(seconds, 1),
    }


def train_runs(params: Params, methods: list[str], runs: Path, device: torch.device) -> None:
    """One source model, then every method from it; each run saved once (resumable)."""
    runs.mkdir(parents=True, exist_ok=True)
    source_file = runs / "source.pt"
    if not source_file.is_file():
        started = time.perf_counter()
        source = train_source_model(params, device)
        save_classifier(source_file, source.model, {"seconds": time.perf_counter() - started})
    save_classifier(paths.SOURCE_MODEL, load_classifier(source_file)[0])
    for method in methods:
        record_file = runs / f"{method}.json"
        if record_file.is_file():
            continue
        started, cpu = time.perf_counter(), time.process_time()
        result = adapt(with_changes(params, adapt={"method": method}), device)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        save_classifier(runs / f"{method}.pt", result.adapted_model)
        for epoch, model in result.snapshots.items():
            save_classifier(runs / f"{method}.epoch{epoch}.pt", model)
        record_file.write_text(json.dumps({**_record(result, seconds), "cpu_seconds": cpu}))
        print(f"    {method:12s} {seconds:5.0f} s ({cpu:.0f} s CPU)", flush=True)


def scored_models(
    names: list[str], runs: Path, device: torch.device, max_samples: int
) -> tuple[Evidence, dict[str, float]]:
    """The saved models of `names`: their predictions on (the first `max_samples`, 0: all of)
    the target train pool, and their target test accuracy (the oracle, for scoring only)."""
    models = {name: load_classifier(runs / f"{name}.pt")[0] for name in names}
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    evidence = gather_evidence(models, None, target, device, max_samples)
    target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
    return evidence, {n: score(m, target_test, device, 256, 15).accuracy for n, m in models.items()}


def _warnings_of_method(
    runs: Path, method: str, params: Params, pools: tuple, device: torch.device
) -> list[str]:
    """The warnings a one-method run (adapt.method: <method>) would carry."""
    record = json.loads((runs / f"{method}.json").read_text())
    source_val, target = pools
    return method_warnings(
        load_classifier(runs / f"{method}.pt")[0],
        load_classifier(runs / "source.pt")[0],
        (source_val if method_class(method).uses_source else None, target),
        device,
        params.selection.max_samples,
        (params.selection.validator, record["negative_transfer_suspected"], record["fell_back"]),
    )


def unanimity(voters: list[str], test_scores: dict[str, Scores]) -> dict[str, Any]:
    """Oracle check of the consensus that agreement rules trust: the share of target test
    images on which every voter gives the same label, and how often that label is right."""
    predicted = torch.stack([test_scores[v].predictions for v in voters])
    same = (predicted == predicted[0]).all(0)
    right = predicted[0][same] == test_scores[voters[0]].labels[same]
    return {
        "voters": voters,
        "coverage": float(same.float().mean()),
        "accuracy": float(right.float().mean()) if same.any() else None,
    }


def among(evidence: Evidence, names: list[str]) -> Evidence:
    """What the rules read when only `names` are the candidates (a smaller portfolio)."""
    return Evidence(
        {n: evidence.predictions[n] for n in names},
        {n: evidence.models[n] for n in names},
        evidence.target_images,
        evidence.device,
    )


def _rules_over(evidence: Evidence, test_scores: dict[str, Scores], names: list[str]) -> dict:
    """Every rule's pick among `names`, its regret against the best of them, its warnings, and
    how often the adapted voters among them agree on the target test set, and rightly."""
    oracle = {n: test_scores[n].accuracy for n in names}
    scoped = among(evidence, names)
    best = max(names, key=oracle.get)
    rules = {}
    for name, rule in RULES.items():
        scores = rule.score(scoped)
        chosen = pick(scores)
        rules[name] = {
            "pick": chosen,
            "regret": oracle[best] - oracle[chosen],
            "scores": scores,
            "warnings": portfolio_warnings(scoped, chosen, name),
        }
    return {
        "members": names,
        "oracle": best,
        "rules": rules,
        "unanimity": unanimity(adapted_voters(scoped), test_scores),
    }


def score_run(params: Params, methods: list[str], runs: Path, device: torch.device) -> dict:
    """Oracle accuracies, every rule's pick and regret (among all methods and among the default
    portfolio), signals and warnings of one seed."""
    models = {m: load_classifier(runs / f"{m}.pt")[0] for m in methods}
    source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    evidence = gather_evidence(models, source_val, target, device, params.selection.max_samples)
    target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
    test_scores = {m: score(model, target_test, device, 256, 15) for m, model in models.items()}
    oracle = {m: s.accuracy for m, s in test_scores.items()}
    portfolio = [SOURCE_ONLY, *[m for m in PortfolioParams().members if m in methods]]
    consensus = ensemble_probabilities(evidence, adapted_voters(evidence))
    signals = {}
    for m, p in evidence.predictions.items():
        record = json.loads((runs / f"{m}.json").read_text())
        signals[m] = {
            **record,
            "effective_classes": effective_classes(p.target.logits),
            "consensus_agreement": agreement(p.target.logits, consensus),
            "source_val_accuracy": accuracy(p.source),
            "warnings": _warnings_of_method(runs, m, params, (source_val, target), device),
        }
    return {
        "target_accuracy": oracle,
        "suite": _rules_over(evidence, test_scores, methods),
        "portfolio": _rules_over(evidence, test_scores, portfolio),
        "methods": signals,
    }


@dataclass
class SuiteStart:
    """What a benchmark over the suite starts from: its record, the suite's params and device,
    and where the runs of these settings live (runs of other settings stay apart)."""

    record: RunRecord
    base: Params
    device: torch.device
    work: Path
    settings: str

    def runs(self, shift: str, seed: int) -> Path:
        return self.work / shift / "runs" / self.settings / f"seed{seed}"


def suite_start(args: argparse.Namespace) -> SuiteStart:
    """Threads, the run record, params.yaml with the suite's SETTINGS and `--set`, the device."""
    torch.set_num_threads(args.threads)
    project = Path.cwd()
    record = RunRecord(project)
    base = with_overrides(load_params(project / paths.PARAMS), [*SETTINGS, *args.set])
    settings = fingerprint([*SETTINGS, *args.set])[:12]
    return SuiteStart(record, base, resolve_device(base.device), args.work.resolve(), settings)


def run(args: argparse.Namespace) -> None:
    start = suite_start(args)
    record, base, device, work = start.record, start.base, start.device, start.work
    methods = args.methods or sorted(all_methods())
    methods = ["source_only", *[m for m in methods if m != "source_only"]]  # the reference
    results: dict[str, Any] = {
        "settings": {
            "overrides": [*SETTINGS, *args.set],
            "seeds": args.seeds,
            "methods": methods,
            "shifts": args.shifts,
            "rules": list(RULES),
        },
        "default_rule": DEFAULT_RULE,
        "shifts": {},
    }
    for name in args.shifts:
        params, summary = prepare_shift(name, work / name, base)
        runs_by_seed = {}
        with working_in(work / name):
            for seed in args.seeds:
                runs = start.runs(name, seed)
                seeded = with_changes(params, seed=seed)
                if not args.score_only:
                    print(f"{name}, seed {seed}", flush=True)
                    train_runs(seeded, methods, runs, device)
                runs_by_seed[seed] = score_run(seeded, methods, runs, device)
        results["shifts"][name] = {"summary": summary, "seeds": runs_by_seed}
        print(render_shift(name, results["shifts"][name], methods), flush=True)
    record.write(args.json, results)
    print("\n" + shifts_region({**results, "run": record.finished()}))


def render_shift(name: str, shift: dict, methods: list[str]) -> str:
    """One shift's tables: each method's target accuracy (oracle), then each rule's picks among
    all methods and among the default portfolio."""
    seeds = list(shift["seeds"].values())
    rows = [
        [
            m,
            mean_std([s["target_accuracy"][m] for s in seeds]),
            f"{sum(bool(s['methods'][m]['warnings']) for s in seeds)}/{len(seeds)}",
        ]
        for m in methods
    ]
    header = ["method", "target accuracy (%, oracle)", "runs with a warning"]
    lines = [f"\n{name}: {shift['summary']} ({len(seeds)} seeds)", "", table(header, rows, {1, 2})]
    for scope, title in SCOPES.items():
        best = ", ".join(s[scope]["oracle"] for s in seeds)
        rows = []
        for rule in RULES:
            runs = [s[scope]["rules"][rule] for s in seeds]
            regret = statistics.mean(100 * r["regret"] for r in runs)
            warned = sum(bool(r["warnings"]) for r in runs)
            picks = ", ".join(r["pick"] for r in runs)
            rows.append([rule, picks, f"{regret:.1f}", f"{warned}/{len(seeds)}"])
        header = ["rule", "picks", "regret (points)", "runs warned"]
        lines += ["", f"{title}: oracle-best per seed {best}", "", table(header, rows, {2, 3})]
    return "\n".join(lines)
