"""Do the transferability scores predict the target accuracy a candidate ends with?

On the embedded demo, builds a zoo of candidate source models (different backbones,
capacities and amounts of source training), ranks them with the rank stage's library, then
takes each candidate through what `pretrain.backbone: auto` would do with it (fine-tune on
the source) and the default adaptation (params.yaml), and scores the adapted model on the
target test split. Prints Kendall's tau between each estimator and that accuracy.

Target test labels are read only for that final score, after ranking and adaptation.

    python -m adaptflow.bench rank                 # needs `dvc repro prepare` first
    python -m adaptflow.bench rank --set adapt.epochs=4 --json rank.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from scipy.stats import kendalltau

from adaptflow import paths
from adaptflow.adaptation import adapt
from adaptflow.bench.common import scratch_project, with_changes, with_overrides
from adaptflow.data.pools import load_pool
from adaptflow.devices import resolve_device
from adaptflow.evaluate import score
from adaptflow.models import save_classifier
from adaptflow.params import AUTO_METHOD, CandidateParams, RankParams, load_params
from adaptflow.ranking import rank
from adaptflow.source_model import train_source_model
from adaptflow.transferability import ESTIMATORS, HIGHER_IS_BETTER

# name -> how the candidate was trained on the source (pretrain overrides)
ZOO = {
    "small_cnn_20steps": {"backbone": "small_cnn", "epochs": 1, "steps_per_epoch": 20},
    "small_cnn": {"backbone": "small_cnn"},
    "resnet18": {"backbone": "resnet18", "epochs": 3},
    "mobilenet_v3_small": {"backbone": "mobilenet_v3_small", "epochs": 3},
    "shufflenet_v2_x0_5": {"backbone": "shufflenet_v2_x0_5", "epochs": 3},
    "resnet18_20steps": {"backbone": "resnet18", "epochs": 1, "steps_per_epoch": 20},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", nargs="*", choices=sorted(ZOO), default=sorted(ZOO))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the per-candidate rows here")


def run(args: argparse.Namespace) -> None:
    project = Path.cwd()
    base = with_overrides(load_params(project / paths.PARAMS), args.set)
    if base.adapt.method == AUTO_METHOD:  # one method per candidate here: SHOT, the fastest
        base = with_changes(base, adapt={"method": "shot"})
    device = resolve_device(base.device)
    with scratch_project(project):
        candidates = []
        for name in args.candidates:
            started = time.perf_counter()
            trained = train_source_model(with_changes(base, pretrain=ZOO[name]), device)
            save_classifier(Path("zoo") / f"{name}.pt", trained.model)
            candidates.append(CandidateParams(name=name, checkpoint=f"zoo/{name}.pt"))
            print(f"candidate {name}: trained in {time.perf_counter() - started:.0f} s", flush=True)

        started = time.perf_counter()
        ranked = rank(
            RankParams(enabled=True, candidates=candidates, estimator=base.rank.estimator),
            load_pool(paths.SOURCE_TRAIN, "source train", labeled=True),
            load_pool(paths.TARGET_TRAIN, "target train", labeled=False),
            load_pool(paths.TARGET_LABELED, "labeled target", labeled=True),
            base.data.channels,
            device,
            base.seed,
        )
        print(f"ranked {len(candidates)} candidates in {time.perf_counter() - started:.1f} s")

        target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
        rows = []
        for candidate in candidates:
            source = train_source_model(base, device, candidate=candidate)
            save_classifier(paths.SOURCE_MODEL, source.model)
            adapted = adapt(base, device).adapted_model
            rows.append(
                {
                    "candidate": candidate.name,
                    **_scores(ranked["candidates"][candidate.name], ranked["scored_on"]),
                    "source_only": score(source.model, target_test, device, 256, 15).accuracy,
                    "adapted": score(adapted, target_test, device, 256, 15).accuracy,
                }
            )
            print(f"  {candidate.name}: target accuracy {rows[-1]['adapted']:.4f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "rank": ranked}, indent=2))
    _print(rows, base.adapt.method)


def _scores(candidate: dict, pool: str) -> dict[str, float]:
    return {**{e: candidate[pool][e] for e in ESTIMATORS}, "domain_gap": candidate["domain_gap"]}


def _print(rows: list[dict], method: str) -> None:
    estimators = (*ESTIMATORS, "domain_gap")
    print(f"\nMNIST -> UCI digits: candidates, their scores, target accuracy after {method}")
    print("| candidate | LogME | LEEP | NCE | H-score | domain gap | source-only | adapted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in sorted(rows, key=lambda r: -r["adapted"]):
        cells = [f"{row[e]:.3f}" for e in estimators]
        cells += [f"{100 * row['source_only']:.1f}", f"{100 * row['adapted']:.1f}"]
        print(f"| {row['candidate']} | {' | '.join(cells)} |")
    print("\nKendall's tau of each score with target accuracy (1 = same order, -1 = reversed):")
    for estimator in estimators:
        sign = 1.0 if HIGHER_IS_BETTER[estimator] else -1.0
        for outcome in ("adapted", "source_only"):
            tau = kendalltau([sign * r[estimator] for r in rows], [r[outcome] for r in rows])
            print(f"  {estimator:10s} vs {outcome:11s} tau {tau.statistic:+.2f}", end="")
            print(f" (p {tau.pvalue:.2f})")
