"""Do early label-free scores predict the final choice? The budgeted portfolio on the suite.

For each shift of the suite and each seed: one source model, then every default portfolio
member adapted to each epoch a rung of `--budget` stops at, and to the end (a member goes on
from its rung, never from scratch: adaptflow/adapt/rungs.py). Then, from those same runs:

- full: the rule's pick among the source model and all members at the last epoch
  (`adapt.portfolio.budget: full`);
- budgeted: the pipeline's successive halving (`adapt.portfolio.budget`, default 2.5): after
  each rung the rule keeps its best members, and picks among the source model and the last
  survivor.

Target test labels score the picks afterwards (regret: the best member's accuracy at the last
rung minus the pick's). Compute is counted in member-epochs, and as a multiple of one method's.

    python -m adaptflow.bench rungs                          # 4 shifts x 3 seeds
    python -m adaptflow.bench rungs --shifts demo --seeds 0 --json /tmp/rungs.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from adaptflow.adapt.rules import RULES, gather_evidence, pick
from adaptflow.adapt.rungs import (
    Member,
    Rung,
    member_epochs,
    rung_schedule,
    successive_halving,
    train_to_rung,
)
from adaptflow.bench.common import RunRecord, with_changes, with_overrides
from adaptflow.bench.shifts import SETTINGS, prepare_shift, working_in
from adaptflow.bench.tables import rungs_region
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
    parser.add_argument("--budget", type=float, default=PortfolioParams().budget)
    parser.add_argument("--rule", default=PortfolioParams().rule, choices=sorted(RULES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path(".adaptflow/bench/shifts"))
    parser.add_argument("--json", type=Path, default=Path("results/rungs.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def _rung_file(runs: Path, member: str, epoch: int) -> Path:
    return runs / f"{member}.rung{epoch}.pt"


def train_rungs(params: Params, members: list[str], epochs: list[int], runs: Path) -> None:
    """The source model, then each member at each epoch a rung may stop at (saved once)."""
    device = resolve_device(params.device)
    runs.mkdir(parents=True, exist_ok=True)
    if not (runs / "source.pt").is_file():
        save_classifier(runs / "source.pt", train_source_model(params, device).model)
    save_classifier(paths.SOURCE_MODEL, load_classifier(runs / "source.pt")[0])
    for member in members:
        for epoch in epochs:
            file = _rung_file(runs, member, epoch)
            if file.is_file():
                continue
            started = time.perf_counter()
            one = with_changes(params, adapt={"method": member})
            save_classifier(file, train_to_rung(one, member, epoch, device).adapted_model)
            print(f"    {member:10s} epoch {epoch}: {time.perf_counter() - started:4.0f} s")


def halving(
    runs: Path, params: Params, members: list[str], rule: str, rungs: list[Rung]
) -> dict[str, Any]:
    """Full and budgeted picks of one seed (the library's successive halving over the stored
    rung models), their oracle accuracies and their compute."""
    device = resolve_device(params.device)
    source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)

    def rule_scores(models: dict[str, Classifier]) -> dict[str, float]:
        samples = params.selection.max_samples
        return RULES[rule].score(gather_evidence(models, source_val, target, device, samples))

    def at(member: str, epoch: int) -> Member:
        return load_classifier(_rung_file(runs, member, epoch))[0], {}

    source = load_classifier(runs / "source.pt")[0]
    first = {m: at(m, rungs[0].epoch) for m in members}
    halved = successive_halving(rungs, first, source, rule_scores, at)
    budgeted = pick(halved.finalists(rule_scores(halved.models(source))))
    last = params.adapt.epochs
    everyone = {SOURCE_ONLY: source, **{m: at(m, last)[0] for m in members}}
    full = pick(rule_scores(everyone))  # the survivors' models at the last epoch are these
    target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
    oracle = {n: score(m, target_test, device, 256, 15).accuracy for n, m in everyone.items()}
    best = max(oracle.values())
    return {
        "oracle": oracle,
        "full": {"pick": full, "regret": best - oracle[full], "member_epochs": len(members) * last},
        "budgeted": {
            "pick": budgeted,
            "regret": best - oracle[budgeted],
            "member_epochs": member_epochs(rungs, len(members)),
        },
        "single_method_epochs": last,
        "rungs": halved.rungs,
    }


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    project = Path.cwd()
    record = RunRecord(project)
    overrides = [*SETTINGS, *args.set]
    base = with_overrides(load_params(project / paths.PARAMS), overrides)
    members = list(PortfolioParams().members)
    settings = fingerprint(overrides)[:12]
    settings_record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results: dict[str, Any] = {"settings": settings_record | {"overrides": overrides}, "shifts": {}}
    for name in args.shifts:
        params, _ = prepare_shift(name, args.work.resolve() / name, base)
        seeds = {}
        with working_in(args.work.resolve() / name):
            for seed in args.seeds:
                print(f"{name}, seed {seed}", flush=True)
                runs = args.work.resolve() / name / "rungs" / settings / f"seed{seed}"
                seeded = with_changes(params, seed=seed)
                rungs = rung_schedule(args.budget, len(members), seeded.adapt.epochs)
                train_rungs(seeded, members, [r.epoch for r in rungs], runs)
                seeds[seed] = halving(runs, seeded, members, args.rule, rungs)
        results["shifts"][name] = seeds
    record.write(args.json, results)
    print("\n" + rungs_region({**results, "run": record.finished()}))
