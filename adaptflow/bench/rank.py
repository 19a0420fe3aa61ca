"""Do the transferability scores predict the target accuracy a candidate ends with?

On the embedded demo, builds a zoo of candidate source models (different backbones,
capacities and amounts of source training), ranks them with the rank stage's library, then
takes each candidate through what `pretrain.backbone: auto` would do with it (fine-tune on
the source) and the default adaptation (params.yaml), and scores the adapted model on the
target test split. Prints Kendall's tau between each estimator and that accuracy.

Target test labels are read only for that final score, after ranking and adaptation.

    python -m adaptflow.bench rank --json results/rank.json   # needs `dvc repro prepare` first
    python -m adaptflow.bench rank --set adapt.epochs=4
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from scipy.stats import kendalltau

from adaptflow.adapt.one_method import adapt
from adaptflow.bench.common import RunRecord, scratch_project, with_changes, with_overrides
from adaptflow.bench.tables import rank_table, tau_table
from adaptflow.core import paths
from adaptflow.core.devices import resolve_device
from adaptflow.core.params import AUTO_METHOD, CandidateParams, RankParams, load_params
from adaptflow.data.pools import load_pool
from adaptflow.evaluation.metrics import score
from adaptflow.models.classifier import save_classifier
from adaptflow.source_model.pretrain import train_source_model
from adaptflow.source_model.ranking import rank
from adaptflow.source_model.transferability import ESTIMATORS, HIGHER_IS_BETTER

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
    parser.add_argument("--json", type=Path, help="also write the results here (results/rank.json)")


def run(args: argparse.Namespace) -> None:
    project = Path.cwd()
    record = RunRecord(project)
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
    results = {
        "benchmark": "MNIST -> UCI digits (the embedded demo)",
        "settings": {
            "candidates": {name: ZOO[name] for name in args.candidates},
            "overrides": args.set,
            "method": base.adapt.method,
            "estimator": base.rank.estimator,
        },
        "rows": rows,
        "taus": kendall_taus(rows),
        "rank": ranked,
    }
    if args.json:
        record.write(args.json, results)
    print("\n" + rank_table(results) + "\n\n" + tau_table(results))


def _scores(candidate: dict, pool: str) -> dict[str, float]:
    return {**{e: candidate[pool][e] for e in ESTIMATORS}, "domain_gap": candidate["domain_gap"]}


def kendall_taus(rows: list[dict]) -> list[dict]:
    """Kendall's tau (and p) of each estimator's order with each outcome, and its first pick."""
    taus = []
    for estimator in (*ESTIMATORS, "domain_gap"):
        sign = 1.0 if HIGHER_IS_BETTER[estimator] else -1.0
        best = max(rows, key=lambda r: sign * r[estimator])["candidate"]
        for outcome in ("adapted", "source_only"):
            tau = kendalltau([sign * r[estimator] for r in rows], [r[outcome] for r in rows])
            taus.append(
                {
                    "estimator": estimator,
                    "higher_is_better": HIGHER_IS_BETTER[estimator],
                    "outcome": outcome,
                    "tau": _finite(tau.statistic),
                    "p": _finite(tau.pvalue),
                    "first": best,
                }
            )
    return taus


def _finite(value: float) -> float | None:
    """JSON has no NaN: a tau over tied values is undefined (None)."""
    return None if math.isnan(value) else float(value)
