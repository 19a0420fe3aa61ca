"""A few target labels for the choice: regret at 0 to 48 labels, active against random queries.

For each shift of the suite and each seed: the source model and every default portfolio member
adapted to the end (the shifts benchmark's runs: trained once, shared), their predictions on
the target train pool and their target test accuracy. Then the benchmark stands in for the
user and answers each query from the target train labels (it alone reads them): rounds of 8,
drawn actively (adaptflow/adapt/queries.py, with the answers so far) or uniformly at random,
by `--users` simulated users per seed (each draws its own rounds: the draws are random).
At each budget the labeled choice (adaptflow/adapt/labeled_selection.py) keeps a model among
the source model and the members; its regret is the best candidate's target test accuracy
minus the kept one's. At 0 labels the label-free rule chooses, as a run without labels does.
The kept model's 95% interval from the labels is checked against its test accuracy.

    python -m adaptflow.bench labels                       # 4 shifts x 3 seeds
    python -m adaptflow.bench labels --shifts demo --seeds 0 --json /tmp/labels.json
    python -m adaptflow.bench labels --members tent mcc shot     # candidates besides the source
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adaptflow.adapt.label_finetune import finetune_kept
from adaptflow.adapt.labeled_selection import LabeledTarget, accuracy_estimate, choice_from
from adaptflow.adapt.queries import ROUND_SIZE, disagreement, draw_round
from adaptflow.adapt.rules import RULES, adapted_consensus, pick
from adaptflow.bench.common import with_changes, with_overrides
from adaptflow.bench.shifts import (
    SETTINGS,
    prepare_shift,
    scored_models,
    suite_start,
    train_runs,
    working_in,
)
from adaptflow.bench.tables import labels_region
from adaptflow.core import paths
from adaptflow.core.io import load_torch
from adaptflow.core.params import SOURCE_ONLY, Params, PortfolioParams
from adaptflow.data.manifest import scan_domains
from adaptflow.data.pools import ImagePool, load_pool
from adaptflow.data.shifts import SHIFTS
from adaptflow.evaluation.metrics import score
from adaptflow.models.classifier import load_classifier

BUDGETS = [0, 8, 16, 24, 48]
FINETUNE_AT = 24  # labels the fine-tune check starts from
STRATEGIES = ("active", "random")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shifts", nargs="*", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--members", nargs="*", default=PortfolioParams().members)
    parser.add_argument("--users", type=int, default=10, help="simulated users per seed (10)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path(".adaptflow/bench/shifts"))
    parser.add_argument("--json", type=Path, default=Path("results/labels.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        help="also fine-tune the kept model on the first user's 24 active labels (0: no)",
    )


@dataclass
class Candidates:
    """What the simulated rounds read: the candidates' target train predictions (models, N),
    the consensus prior, the label-free rule's pick and each one's target test accuracy."""

    names: list[str]
    predicted: torch.Tensor
    prior: torch.Tensor
    rule_pick: str
    test_accuracy: dict[str, float]


def answers_for(sha256: list[str], classes: list[str]) -> torch.Tensor:
    """The user's answers, simulated: each target train image's class, from its folder."""
    manifest = scan_domains(Path("source"), Path("target"), 10**8).manifest()
    target = manifest[(manifest["domain"] == "target") & (manifest["split"] == "train")]
    label_of = dict(zip(target["sha256"], target["label"], strict=True))
    return torch.tensor([classes.index(label_of[sha]) for sha in sha256])


def candidates_of(names: list[str], runs: Path, device: torch.device) -> Candidates:
    evidence, test_accuracy = scored_models(names, runs, device, max_samples=0)
    agreement = adapted_consensus(evidence)
    return Candidates(
        names,
        torch.stack([evidence.predictions[n].target.logits.argmax(1) for n in names]),
        torch.tensor([agreement[n] for n in names]),
        pick(RULES[PortfolioParams().rule].score(evidence)),
        test_accuracy,
    )


def simulate(
    found: Candidates, answers: torch.Tensor, strategy: str, seed: int
) -> tuple[list[dict], list[int], list[float]]:
    """Rounds of queries up to each budget; the kept model and its regret at each, and the
    labeled images in the order asked with their weights (the first n: the state at n)."""
    names, count = found.names, len(answers)
    best = max(found.test_accuracy.values())
    labeled: list[int] = []
    weights: list[float] = []
    outcome = []
    for budget in BUDGETS:
        while len(labeled) < budget:
            left = sorted(set(range(count)) - set(labeled))
            scores = torch.zeros(len(left))
            if strategy == "active":
                standing = _choice(found, answers, labeled, weights, seed)
                p_best = torch.tensor([standing.p_best[n] for n in names])
                scores = disagreement(found.predicted[:, left], p_best)
            size = min(ROUND_SIZE, budget - len(labeled))
            for draw in draw_round(scores, size, seed * 10_000 + len(labeled)):
                labeled.append(left[draw.index])
                weights.append(1.0 / (draw.pool * draw.probability))
        kept, covered = found.rule_pick, None
        if budget:
            choice = _choice(found, answers, labeled, weights, seed)
            kept = choice.kept
            interval = accuracy_estimate(choice.correct[names.index(kept)], torch.tensor(weights))
            covered = interval["low"] <= found.test_accuracy[kept] <= interval["high"]
        regret = 100 * (best - found.test_accuracy[kept])
        outcome.append({"labels": budget, "kept": kept, "regret": regret, "covered": covered})
    return outcome, labeled, weights


def finetune_check(
    params: Params, found: Candidates, answers: torch.Tensor, user: tuple, runs: Path, device
) -> dict[str, Any]:
    """The model a simulated user (seed, labels asked, weights) kept at FINETUNE_AT active
    labels, fine-tuned on them as `adapt.portfolio.finetune_on_labels` does: both models'
    target test accuracy, and which one the held-out labels kept."""
    seed, labeled, weights = user[0], user[1][:FINETUNE_AT], user[2][:FINETUNE_AT]
    choice = _choice(found, answers, labeled, weights, seed)
    kept = choice.kept
    pool = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    index = torch.tensor(labeled, dtype=torch.long)
    target = LabeledTarget(
        ImagePool("labeled target", pool.images[index], answers[index], pool.classes),
        torch.tensor(weights),
        from_file=len(labeled),
        from_per_class=0,
        weighted=True,
    )
    model = load_classifier(runs / f"{kept}.pt")[0]
    tuned = finetune_kept(kept, model, target, params, device)
    target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
    tuned_accuracy = score(tuned.model, target_test, device, 256, 15).accuracy
    return {
        "kept": kept,
        "test_accuracy": found.test_accuracy[kept],
        "finetuned_test_accuracy": tuned_accuracy,
        "finetuned_kept": tuned.better,
        "p_better": tuned.record["p_better"],
    }


def _choice(found: Candidates, answers: torch.Tensor, labeled: list[int], weights, seed: int):
    index = torch.tensor(labeled, dtype=torch.long)
    correct = found.predicted[:, index] == answers[index]
    return choice_from(found.names, correct, torch.tensor(weights), found.prior, seed)


def summarize(shifts: dict[str, Any]) -> dict[str, Any]:
    """Mean regret per budget and strategy over shifts, seeds and simulated users, and how often
    the kept model's interval covered its test accuracy."""
    mean_regret, coverage = {}, {}
    for strategy in STRATEGIES:
        users = [u for shift in shifts.values() for s in shift.values() for u in s[strategy]]
        by_budget = [[user[i]["regret"] for user in users] for i in range(len(BUDGETS))]
        mean_regret[strategy] = [round(statistics.mean(values), 2) for values in by_budget]
        checked = [b["covered"] for user in users for b in user if b["covered"] is not None]
        coverage[strategy] = round(sum(checked) / len(checked), 3)
    return {"mean_regret": mean_regret, "interval_coverage": coverage}


def finetune_summary(shifts: dict[str, Any]) -> dict[str, Any]:
    """Mean target test gain (points) of the fine-tuned model over the kept one, and of what
    the held-out labels delivered (the fine-tuned model where they kept it)."""
    checks = [s["finetune"] for shift in shifts.values() for s in shift.values() if "finetune" in s]
    if not checks:
        return {}
    gains = [100 * (c["finetuned_test_accuracy"] - c["test_accuracy"]) for c in checks]
    delivered = [g if c["finetuned_kept"] else 0.0 for g, c in zip(gains, checks, strict=True)]
    return {
        "finetune": {
            "at_labels": FINETUNE_AT,
            "runs": len(checks),
            "mean_gain": round(statistics.mean(gains), 2),
            "mean_delivered_gain": round(statistics.mean(delivered), 2),
            "kept": sum(c["finetuned_kept"] for c in checks),
            "helped": sum(g > 0 for g in gains),
        }
    }


def run(args: argparse.Namespace) -> None:
    start = suite_start(args)  # the shifts benchmark's runs, shared
    device = start.device
    names = [SOURCE_ONLY, *args.members]
    shifts: dict[str, Any] = {}
    for name in args.shifts:
        params, _ = prepare_shift(name, start.work / name, start.base)
        shifts[name] = {}
        with working_in(start.work / name):
            pool = load_torch(paths.TARGET_TRAIN, mmap=True)  # one cache per shift, every seed
            answers = answers_for(pool["sha256"], list(pool["classes"]))
            for seed in args.seeds:
                runs = start.runs(name, seed)
                seeded = with_changes(params, seed=seed)
                print(f"{name}, seed {seed}", flush=True)
                train_runs(seeded, names, runs, device)
                found = candidates_of(names, runs, device)
                users = {
                    s: [simulate(found, answers, s, 100 * seed + u) for u in range(args.users)]
                    for s in STRATEGIES
                }
                shifts[name][str(seed)] = {s: [u[0] for u in users[s]] for s in STRATEGIES}
                if args.finetune_epochs:  # the first user's active labels put to work
                    tuning = f"adapt.portfolio.finetune_on_labels.epochs={args.finetune_epochs}"
                    shifts[name][str(seed)]["finetune"] = finetune_check(
                        with_overrides(seeded, [tuning]),
                        found,
                        answers,
                        (100 * seed, *users["active"][0][1:]),  # the first user's seed
                        runs,
                        device,
                    )
    results = {
        "settings": {
            "overrides": [*SETTINGS, *args.set],
            "seeds": args.seeds,
            "users": args.users,
            "finetune_epochs": args.finetune_epochs,
        },
        "rule": PortfolioParams().rule,
        "candidates": names,
        "budgets": BUDGETS,
        **summarize(shifts),
        **finetune_summary(shifts),
        "shifts": shifts,
    }
    start.record.write(args.json, results)
    print("\n" + labels_region({**results, "run": start.record.finished()}))
