"""Do early label-free scores predict the final choice? Successive halving over the portfolio.

For each shift of the suite and each seed: one source model, then every default portfolio
member adapted in rungs (`--rungs 1 2 5`: epochs of the one `adapt.epochs` schedule; a member
continues from its rung, never from scratch). After each rung the rule scores the source model
and every member at that rung. Then, from those same runs:

- full: the rule's pick among all members at the last rung (today's `auto`);
- budgeted: after each rung keep the rule's `--keep` best members (default 2, then 1), and
  take the rule's pick among the survivors at the last rung.

Target test labels score the picks afterwards (regret: the best member's accuracy at the last
rung minus the pick's). Compute is counted in member-epochs, and as a multiple of one method's.

    python -m adaptflow.bench rungs                          # 4 shifts x 3 seeds
    python -m adaptflow.bench rungs --shifts demo --seeds 0 --json /tmp/rungs.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from adaptflow.adapt.one_method import adapt
from adaptflow.adapt.rules import RULES, gather_evidence, pick
from adaptflow.bench.common import RunRecord, with_changes, with_overrides
from adaptflow.bench.shifts import SETTINGS, prepare_shift, working_in
from adaptflow.bench.tables import table
from adaptflow.core import paths
from adaptflow.core.devices import resolve_device
from adaptflow.core.io import fingerprint
from adaptflow.core.params import SOURCE_ONLY, Params, PortfolioParams, load_params
from adaptflow.data.pools import load_pool
from adaptflow.data.shifts import SHIFTS
from adaptflow.evaluation.metrics import score
from adaptflow.models.classifier import Classifier, load_classifier, save_classifier
from adaptflow.source_model.pretrain import train_source_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shifts", nargs="*", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--rungs", nargs="*", type=int, default=[1, 2, 5])
    parser.add_argument("--keep", nargs="*", type=int, default=[2, 1], help="after each rung")
    parser.add_argument("--rule", default=PortfolioParams().rule, choices=sorted(RULES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path(".adaptflow/bench/shifts"))
    parser.add_argument("--json", type=Path, default=Path("results/rungs.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def train_rungs(params: Params, members: list[str], rungs: list[int], runs: Path) -> None:
    """The source model, then each member at each rung (saved once: resumable)."""
    device = resolve_device(params.device)
    runs.mkdir(parents=True, exist_ok=True)
    if not (runs / "source.pt").is_file():
        save_classifier(runs / "source.pt", train_source_model(params, device).model)
    save_classifier(paths.SOURCE_MODEL, load_classifier(runs / "source.pt")[0])
    for member in members:
        for rung in rungs:
            file = runs / f"{member}.rung{rung}.pt"
            if file.is_file():
                continue
            started = time.perf_counter()
            result = adapt(
                with_changes(params, adapt={"method": member}),
                device,
                checkpoints=runs / f"{member}.state",
                until_epoch=rung,
            )
            save_classifier(file, result.adapted_model)
            print(
                f"    {member:10s} rung {rung}: {time.perf_counter() - started:4.0f} s", flush=True
            )


def _rule_scores(models: dict[str, Classifier], params: Params, rule: str) -> dict[str, float]:
    device = resolve_device(params.device)
    source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    evidence = gather_evidence(models, source_val, target, device, params.selection.max_samples)
    return RULES[rule].score(evidence)


def halving(
    runs: Path, params: Params, members: list[str], rungs: list[int], keep: list[int], rule: str
) -> dict[str, Any]:
    """Full and budgeted picks of one seed, their oracle accuracies and their compute."""
    source = load_classifier(runs / "source.pt")[0]

    def models_at(rung: int, names: list[str]) -> dict[str, Classifier]:
        loaded = {m: load_classifier(runs / f"{m}.rung{rung}.pt")[0] for m in names}
        return {SOURCE_ONLY: source, **loaded}

    target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
    device = resolve_device(params.device)
    last = rungs[-1]
    oracle = {
        name: score(model, target_test, device, 256, 15).accuracy
        for name, model in models_at(last, members).items()
    }
    full_scores = _rule_scores(models_at(last, members), params, rule)
    survivors, trace, spent, previous = list(members), [], 0, 0
    for rung, kept in zip(rungs, [*keep, None], strict=False):
        spent += len(survivors) * (rung - previous)
        scores = _rule_scores(models_at(rung, survivors), params, rule)
        ranked = sorted(survivors, key=lambda m: scores[m], reverse=True)
        dropped = ranked[kept:] if kept is not None else []
        trace.append({"rung": rung, "scores": scores, "dropped": dropped})
        survivors, previous = ranked[:kept] if kept is not None else ranked, rung
    budgeted = pick(trace[-1]["scores"])
    full = pick(full_scores)
    best = max(oracle[m] for m in oracle)
    return {
        "oracle": oracle,
        "full": {"pick": full, "regret": best - oracle[full], "member_epochs": len(members) * last},
        "budgeted": {"pick": budgeted, "regret": best - oracle[budgeted], "member_epochs": spent},
        "single_method_epochs": last,
        "rungs": trace,
    }


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    project = Path.cwd()
    record = RunRecord(project)
    overrides = [*SETTINGS, *args.set, f"adapt.epochs={args.rungs[-1]}"]
    base = with_overrides(load_params(project / paths.PARAMS), overrides)
    members = list(PortfolioParams().members)
    settings = fingerprint(overrides)[:12]
    settings_record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results: dict[str, Any] = {"settings": settings_record | {"overrides": overrides}, "shifts": {}}
    rows = []
    for name in args.shifts:
        params, _ = prepare_shift(name, args.work.resolve() / name, base)
        seeds = {}
        with working_in(args.work.resolve() / name):
            for seed in args.seeds:
                print(f"{name}, seed {seed}", flush=True)
                runs = args.work.resolve() / name / "rungs" / settings / f"seed{seed}"
                seeded = with_changes(params, seed=seed)
                train_rungs(seeded, members, args.rungs, runs)
                seeds[seed] = halving(runs, seeded, members, args.rungs, args.keep, args.rule)
        results["shifts"][name] = seeds
        rows.append(_row(name, list(seeds.values())))
    record.write(args.json, results)
    header = ["shift", "full: picks", "regret", "budgeted: picks", "regret", "compute (x one)"]
    print("\n" + table(header, rows, {2, 4, 5}))


def _row(name: str, seeds: list[dict[str, Any]]) -> list[str]:
    def mean(kind: str, key: str) -> float:
        return statistics.mean(s[kind][key] for s in seeds)

    one = seeds[0]["single_method_epochs"]
    compute = mean("budgeted", "member_epochs") / one
    return [
        name,
        ", ".join(s["full"]["pick"] for s in seeds),
        f"{100 * mean('full', 'regret'):.1f}",
        ", ".join(s["budgeted"]["pick"] for s in seeds),
        f"{100 * mean('budgeted', 'regret'):.1f}",
        f"{compute:.1f} (full {mean('full', 'member_epochs') / one:.0f})",
    ]
