"""`adapt.method: auto`: adapt a portfolio of methods, keep the one a label-free rule prefers.

Each member of `adapt.portfolio.members` is adapted by its own adapt_member stage (a DVC
`foreach`), as a one-method run; the adapt stage then scores every member's model and the
unadapted source model (`source_only`, always among the models) with every rule of
adaptflow.adapt.rules, keeps the configured rule's pick, and collects the label-free warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from adaptflow.adapt.diagnostics import RunSignals, accuracy, run_warnings
from adaptflow.adapt.one_method import Adaptation, summary_metrics
from adaptflow.adapt.rules import (
    RULES,
    Evidence,
    adapted_voters,
    check_rule,
    ensemble_probabilities,
    gather_evidence,
    pick,
)
from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import read_json
from adaptflow.core.params import AUTO_METHOD, SOURCE_ONLY, Params
from adaptflow.core.paths import member_dir
from adaptflow.data.pools import load_pool
from adaptflow.methods.base import all_methods, method_class
from adaptflow.models.classifier import Classifier, load_classifier

MODEL_FILE, RECORD_FILE = "model.pt", "record.json"


def portfolio_warnings(evidence: Evidence, chosen: str, rule: str) -> list[str]:
    """Warnings of `adapt.method: auto` keeping `chosen` (reads `source_only` as the reference)."""
    predictions = evidence.predictions
    accuracies = None
    if method_class(chosen).uses_source and predictions[chosen].source is not None:
        accuracies = (
            accuracy(predictions[chosen].source),
            accuracy(predictions[SOURCE_ONLY].source),
        )
    return run_warnings(
        RunSignals(
            adapted_target=predictions[chosen].target.logits,
            source_target=predictions[SOURCE_ONLY].target.logits,
            consensus=ensemble_probabilities(evidence, adapted_voters(evidence)),
            consensus_of="the adapted members' consensus",
            portfolio=[p.target.logits for p in predictions.values()],
            source_accuracies=accuracies,
            selector=rule,
            prefers_source=chosen == SOURCE_ONLY,
            fell_back=chosen == SOURCE_ONLY,
        )
    )


def member_params(params: Params, member: str) -> Params:
    """`params` as a one-method run of portfolio member `member`."""
    members = params.adapt.portfolio.members
    if member not in members or member not in all_methods():
        raise AdaptflowError(
            f"adapt.portfolio.members: {member!r} is not a known method among the members "
            f"({', '.join(members)}); choose from {', '.join(sorted(all_methods()))}"
        )
    return params.model_copy(update={"adapt": params.adapt.model_copy(update={"method": member})})


def inactive_record(member: str, method: str) -> dict[str, Any]:
    """What a member stage records when `adapt.method` is not auto: nothing was trained."""
    return {"member": member, "active": False, "reason": f"adapt.method is {method}, not auto"}


def member_record(result: Adaptation, member: str, warnings: list[str]) -> dict[str, Any]:
    """A trained member's record: its one-method summary and warnings."""
    return {
        "member": member,
        "active": True,
        **summary_metrics(result, member),
        "warnings": warnings,
    }


def _load_member(member: str) -> tuple[Classifier, dict[str, Any]]:
    record = read_json(member_dir(member) / RECORD_FILE)
    if not record.get("active"):
        raise AdaptflowError(
            f"{member_dir(member)}: member {member} was not adapted ({record.get('reason')}); "
            "rerun dvc repro"
        )
    return load_classifier(member_dir(member) / MODEL_FILE)[0], record


@dataclass
class PortfolioChoice:
    rule: str
    chosen: str
    scores: dict[str, dict[str, float]]  # rule -> model name -> score, every usable rule
    picks: dict[str, str]  # rule -> the model it prefers
    models: dict[str, Classifier]  # each member's model, and source_only: the source model
    records: dict[str, dict[str, Any]]  # member -> its adapt_member record
    warnings: list[str]


def choose(params: Params, device: torch.device) -> PortfolioChoice:
    """Load every member's model, score them and the source model with every rule, keep the
    configured rule's pick, and collect the label-free warnings."""
    portfolio = params.adapt.portfolio
    configured = check_rule(portfolio.rule)
    models = {SOURCE_ONLY: load_classifier(paths.SOURCE_MODEL)[0]}
    records = {}
    for member in portfolio.members:
        models[member], records[member] = _load_member(member)
    reads_source = configured.needs_source or any(
        method_class(m).uses_source for m in portfolio.members
    )
    source_val = (
        load_pool(paths.SOURCE_VAL, "source validation", labeled=True) if reads_source else None
    )
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    evidence = gather_evidence(models, source_val, target, device, params.selection.max_samples)
    scores = {
        name: rule.score(evidence)
        for name, rule in RULES.items()
        if source_val is not None or not rule.needs_source
    }
    picks = {name: pick(values) for name, values in scores.items()}
    chosen = picks[portfolio.rule]
    return PortfolioChoice(
        rule=portfolio.rule,
        chosen=chosen,
        scores=scores,
        picks=picks,
        models=models,
        records=records,
        warnings=portfolio_warnings(evidence, chosen, portfolio.rule),
    )


def model_file(name: str) -> str:
    """File name of a member's model (or source_only's) inside models/selection/ (auto runs)."""
    return f"{name}.pt"


def _epoch(choice: PortfolioChoice, name: str) -> int:
    return 0 if name == SOURCE_ONLY else int(choice.records[name]["selected_epoch"])


def auto_selection_record(choice: PortfolioChoice) -> dict[str, Any]:
    """models/selection/record.json of an auto run: what each rule picked (evaluate scores
    every model, and so every rule's choice)."""
    return {
        "method": AUTO_METHOD,
        "rule": choice.rule,
        "chosen": choice.chosen,
        "selected_epoch": _epoch(choice, choice.chosen),
        "fell_back_to_source": choice.chosen == SOURCE_ONLY,
        "warnings": choice.warnings,
        "by_rule": {
            rule: {
                "member": picked,
                "epoch": _epoch(choice, picked),
                "score": choice.scores[rule][picked],
                "file": model_file(picked),
            }
            for rule, picked in choice.picks.items()
        },
        "models": {name: model_file(name) for name in choice.models},
    }


def auto_metrics(choice: PortfolioChoice) -> dict[str, Any]:
    """metrics/adapt.json of an auto run: the choice, every model's scores, the warnings."""
    return {
        "method": AUTO_METHOD,
        "chosen": choice.chosen,
        "rule": choice.rule,
        "selected_score": choice.scores[choice.rule][choice.chosen],
        "source_model_score": choice.scores[choice.rule][SOURCE_ONLY],
        "negative_transfer_suspected": choice.chosen == SOURCE_ONLY,
        "fell_back_to_source": choice.chosen == SOURCE_ONLY,
        "picks": choice.picks,
        "scores": choice.scores,
        "members": {
            m: {k: r[k] for k in ("selected_epoch", "train_seconds", "warnings")}
            for m, r in choice.records.items()
        },
        "train_seconds": round(sum(r["train_seconds"] for r in choice.records.values()), 3),
        "warnings": choice.warnings,
    }


def log_scores(live: Any, choice: PortfolioChoice) -> None:
    """The configured rule's score of every model, as a dvclive bar plot."""
    rows = [{"model": name, "score": s} for name, s in choice.scores[choice.rule].items()]
    live.log_plot(f"{choice.rule}_by_model", rows, x="score", y="model", template="bar_horizontal")
