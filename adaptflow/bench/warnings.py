"""Do the label-free disagreement warnings fire where the kept model is poor? On the suite.

For each shift and seed (the shifts benchmark's runs, trained once, shared) and each portfolio
`auto` could run (the default members, and every subset of two or more of them, each with the
source model), the default rule keeps a model, and the two warnings that read the members'
disagreement (adaptflow/adapt/diagnostics.py) fire or not:

- `portfolio_agreement`: the distinct models' mean pairwise agreement on target images is under
  MIN_PORTFOLIO_AGREEMENT ("expect low target accuracy whichever is kept");
- `kept_vs_consensus`: the kept model agrees with the adapted members' consensus under
  MIN_AGREEMENT ("the choice is uncertain").

A run is poor when its kept model's target test accuracy is under POOR. A false alarm is a
warning on a run that is not poor, a miss a poor run without one. The benchmark reports both
rates at the thresholds in use, on the default portfolios and on all of them; the threshold
with the fewest errors (false-alarm rate + miss rate) over all portfolios; and that choice made
on three shifts and checked on the fourth (leave one shift out), the honest figure for a shift
outside the suite. Target test labels are read only to score the kept models.

    python -m adaptflow.bench warnings                 # 4 shifts x 3 seeds
    python -m adaptflow.bench warnings --shifts demo corrupted --seeds 0 --json /tmp/w.json
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptflow.adapt import diagnostics
from adaptflow.adapt.rules import (
    RULES,
    Evidence,
    adapted_voters,
    ensemble_probabilities,
    pick,
)
from adaptflow.bench.common import with_changes
from adaptflow.bench.shifts import (
    SETTINGS,
    among,
    prepare_shift,
    scored_models,
    suite_start,
    train_runs,
    working_in,
)
from adaptflow.bench.tables import warnings_region
from adaptflow.core.params import SOURCE_ONLY, PortfolioParams
from adaptflow.data.shifts import SHIFTS

POOR = 0.6  # a kept model under this target accuracy is what the warnings should announce
THRESHOLDS = [round(0.30 + 0.01 * step, 2) for step in range(66)]  # 0.30 ... 0.95, searched
SIGNALS = {  # the warning -> the threshold it uses now
    "portfolio_agreement": "MIN_PORTFOLIO_AGREEMENT",
    "kept_vs_consensus": "MIN_AGREEMENT",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shifts", nargs="*", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path(".adaptflow/bench/shifts"))
    parser.add_argument("--json", type=Path, default=Path("results/warnings.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")


@dataclass(frozen=True)
class Run:
    """One portfolio on one shift and seed: what its warnings read, and how good its pick is."""

    shift: str
    default: bool  # the default members, as `adapt.method: auto` runs them
    kept_accuracy: float
    signals: dict[str, float]


def portfolio_runs(evidence: Evidence, accuracy: dict[str, float], shift: str) -> list[Run]:
    """The default portfolio and every subset of two or more of its members."""
    members = PortfolioParams().members
    runs = []
    for size in range(2, len(members) + 1):
        for subset in itertools.combinations(members, size):
            names = [SOURCE_ONLY, *subset]
            scoped = among(evidence, names)
            kept = pick(RULES[PortfolioParams().rule].score(scoped))
            logits = [scoped.predictions[n].target.logits for n in names]
            consensus = ensemble_probabilities(scoped, adapted_voters(scoped))
            kept_logits = scoped.predictions[kept].target.logits
            pairwise = diagnostics.mean_pairwise_agreement(logits)  # None: fewer than 2 differ
            signals = {
                "portfolio_agreement": 1.0 if pairwise is None else pairwise,
                "kept_vs_consensus": diagnostics.agreement(kept_logits, consensus),
            }
            runs.append(Run(shift, size == len(members), accuracy[kept], signals))
    return runs


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def rates(runs: list[Run], signal: str, threshold: float) -> dict[str, Any]:
    """How often the warning (signal under threshold) cries wolf, and how often it is silent
    where the kept model is poor."""
    poor = [r for r in runs if r.kept_accuracy < POOR]
    fine = [r for r in runs if r.kept_accuracy >= POOR]
    misses = sum(r.signals[signal] >= threshold for r in poor)
    false_alarms = sum(r.signals[signal] < threshold for r in fine)
    return {
        "threshold": threshold,
        "false_alarms": false_alarms,
        "not_poor": len(fine),
        "false_alarm_rate": _rate(false_alarms, len(fine)),
        "misses": misses,
        "poor": len(poor),
        "miss_rate": _rate(misses, len(poor)),
    }


def best_threshold(runs: list[Run], signal: str) -> float:
    """The threshold with the fewest errors (false-alarm rate + miss rate; ties: the lowest,
    which warns least)."""

    def errors(threshold: float) -> float:
        found = rates(runs, signal, threshold)
        return (found["false_alarm_rate"] or 0.0) + (found["miss_rate"] or 0.0)

    return min(THRESHOLDS, key=errors)


def leave_one_shift_out(runs: list[Run], signal: str) -> dict[str, Any]:
    """The threshold chosen without each shift, and the errors it makes on that shift."""
    chosen: dict[str, float] = {}
    counts = Counter[str]()
    for shift in sorted({r.shift for r in runs}):
        chosen[shift] = best_threshold([r for r in runs if r.shift != shift], signal)
        found = rates([r for r in runs if r.shift == shift], signal, chosen[shift])
        counts.update({k: found[k] for k in ("false_alarms", "not_poor", "misses", "poor")})
    return {
        "thresholds": chosen,
        **counts,
        "false_alarm_rate": _rate(counts["false_alarms"], counts["not_poor"]),
        "miss_rate": _rate(counts["misses"], counts["poor"]),
    }


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Per warning: its rates at the threshold in use and at the one with the fewest errors over
    all portfolios (each on the default portfolios and on all), and leave one shift out."""
    default = [r for r in runs if r.default]
    found = {}
    for signal, constant in SIGNALS.items():

        def both(threshold: float, signal: str = signal) -> dict[str, Any]:
            return {
                "default": rates(default, signal, threshold),
                "all": rates(runs, signal, threshold),
            }

        found[signal] = {
            "constant": constant,
            "in_use": both(getattr(diagnostics, constant)),
            "best": both(best_threshold(runs, signal)),
            "leave_one_shift_out": leave_one_shift_out(runs, signal),
            "default_runs": sorted(
                [r.shift, round(r.kept_accuracy, 4), round(r.signals[signal], 4)] for r in default
            ),
        }
    return found


def run(args: argparse.Namespace) -> None:
    start = suite_start(args)  # the shifts benchmark's runs, shared
    names = [SOURCE_ONLY, *PortfolioParams().members]
    runs: list[Run] = []
    for name in args.shifts:
        params, _ = prepare_shift(name, start.work / name, start.base)
        with working_in(start.work / name):
            for seed in args.seeds:
                folder = start.runs(name, seed)
                seeded = with_changes(params, seed=seed)
                print(f"{name}, seed {seed}", flush=True)
                train_runs(seeded, names, folder, start.device)
                max_samples = seeded.selection.max_samples  # as the adapt stage scores
                evidence, accuracy = scored_models(names, folder, start.device, max_samples)
                runs += portfolio_runs(evidence, accuracy, name)
    results = {
        "settings": {"overrides": [*SETTINGS, *args.set], "seeds": args.seeds},
        "shifts": args.shifts,
        "rule": PortfolioParams().rule,
        "poor_below": POOR,
        "portfolios": len(runs),
        "warnings": summarize(runs),
    }
    start.record.write(args.json, results)
    print("\n" + warnings_region({**results, "run": start.record.finished()}))
