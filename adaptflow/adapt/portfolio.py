"""`adapt.method: auto`: adapt a portfolio of methods, keep the one a label-free rule prefers.

Each member of `adapt.portfolio.members` is adapted to the first rung of the budget
(adaptflow/adapt/rungs.py) by its own adapt_member stage (a DVC `foreach`), as a one-method
run; the adapt stage then halves them with the configured rule, trains the survivors on, scores
the last survivor and the unadapted source model (`source_only`, always among the models) with
every rule of adaptflow.adapt.rules, keeps the configured rule's pick, and collects the
label-free warnings. With labeled target images (adaptflow/adapt/labeled_selection.py) the
labels rank the members at each rung and choose the kept model instead; the rule's pick is
recorded beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from adaptflow.adapt.diagnostics import RunSignals, accuracy, run_warnings
from adaptflow.adapt.label_finetune import MIN_LABELS, SUFFIX, finetune_kept
from adaptflow.adapt.labeled_selection import (
    choose_with_labels,
    labeled_record,
    load_labeled_target,
    read_target_labels,
)
from adaptflow.adapt.members import load_member
from adaptflow.adapt.rules import (
    RULES,
    Evidence,
    adapted_voters,
    check_rule,
    ensemble_probabilities,
    gather_evidence,
    pick,
)
from adaptflow.adapt.rungs import Member, budget_record, schedule_of, successive_halving
from adaptflow.core import paths
from adaptflow.core.params import AUTO_METHOD, SOURCE_ONLY, Params
from adaptflow.data.pools import load_pool
from adaptflow.methods.base import method_class
from adaptflow.models.classifier import Classifier, load_classifier


def portfolio_warnings(
    evidence: Evidence, chosen: str, rule: str, labeled: bool = False
) -> list[str]:
    """Warnings of `adapt.method: auto` keeping `chosen` (reads `source_only` as the reference).
    `labeled`: labeled target images chose, and estimate the kept model's accuracy; the two
    warnings that guess at the choice from the members' disagreement give way to them."""
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
            consensus=None
            if labeled
            else ensemble_probabilities(evidence, adapted_voters(evidence)),
            consensus_of="the adapted members' consensus",
            portfolio=None if labeled else [p.target.logits for p in predictions.values()],
            source_accuracies=accuracies,
            selector=rule,
            prefers_source=chosen == SOURCE_ONLY,
            fell_back=chosen == SOURCE_ONLY,
        )
    )


@dataclass
class PortfolioChoice:
    rule: str
    chosen: str
    scores: dict[str, dict[str, float]]  # rule -> model name -> score, every usable rule
    picks: dict[str, str]  # rule -> the model it prefers
    models: dict[str, Classifier]  # each member's model, and source_only: the source model
    records: dict[str, dict[str, Any]]  # member -> its record at the rung it stopped at
    warnings: list[str]
    budget: dict[str, Any]  # the rungs, who each dropped, and the compute (rungs.budget_record)
    labeled: dict[str, Any] | None  # the choice by labeled target images, when there are some

    @property
    def chosen_member(self) -> str:
        """The member (or source_only) kept, or the one the kept model was fine-tuned from."""
        return self.chosen.removesuffix(SUFFIX)


def choose(
    params: Params, device: torch.device, advance: Callable[[str, int], Member]
) -> PortfolioChoice:
    """Successive halving from every member's first rung (`advance` trains a survivor to a
    later one), then score the source model and the survivors with every rule, keep the
    configured rule's pick, and collect the label-free warnings (over every member)."""
    portfolio = params.adapt.portfolio
    configured = check_rule(portfolio.rule)
    source_model = load_classifier(paths.SOURCE_MODEL)[0]
    rungs = schedule_of(params)
    first = {member: load_member(member, rungs[0].epoch) for member in portfolio.members}
    reads_source = configured.needs_source or any(
        method_class(m).uses_source for m in portfolio.members
    )
    source_val = (
        load_pool(paths.SOURCE_VAL, "source validation", labeled=True) if reads_source else None
    )
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    known = {}  # predictions by model: a member dropped at a rung is scored again at the end

    def evidence_of(models: dict[str, Classifier]) -> Evidence:
        max_samples = params.selection.max_samples
        return gather_evidence(models, source_val, target, device, max_samples, known)

    labeled = load_labeled_target(read_target_labels())
    rule_at_rungs = []  # with labels: the rule's own scores at each rung, to say where they differ

    def rung_scores(models: dict[str, Classifier]) -> dict[str, float]:
        evidence = evidence_of(models)
        rule_at_rungs.append(configured.score(evidence))
        if labeled is None:
            return rule_at_rungs[-1]
        return choose_with_labels(evidence, labeled, device, params.seed).mean_accuracy

    halving = successive_halving(rungs, first, source_model, rung_scores, advance)
    models = halving.models(source_model)
    everyone = evidence_of(models)
    scores = {
        name: halving.finalists(rule.score(everyone))
        for name, rule in RULES.items()
        if source_val is not None or not rule.needs_source
    }
    picks = {name: pick(values) for name, values in scores.items()}
    record = None
    if labeled is not None:  # the finalists by their labels, with everyone's consensus as prior
        finalists = list(halving.finalists(models))
        by_labels = choose_with_labels(everyone, labeled, device, params.seed, finalists)
        record = labeled_record(by_labels, labeled, label_free_pick=picks[portfolio.rule])
        record["rungs"] = rung_differences(halving.rungs, rule_at_rungs)
    chosen = record["kept"] if record else picks[portfolio.rule]
    final_scores = record["posterior_mean_accuracy"] if record else scores[portfolio.rule]
    warnings = portfolio_warnings(everyone, chosen, portfolio.rule, labeled=record is not None)
    if record and portfolio.finetune_on_labels.epochs and len(labeled) >= MIN_LABELS:
        tuned = finetune_kept(chosen, models[chosen], labeled, params, device)  # one more
        models = {**models, tuned.name: tuned.model}
        record["finetune"] = tuned.record
        if tuned.better:
            chosen = record["kept"] = tuned.name
            record["accuracy"] = tuned.record["accuracy"]
    return PortfolioChoice(
        rule=portfolio.rule,
        chosen=chosen,
        scores=scores,
        picks=picks,
        models=models,
        records={m: record for m, (_, record) in halving.members.items()},
        warnings=warnings,
        budget=budget_record(params, rungs, halving, final_scores),
        labeled=record,
    )


def rung_differences(
    rungs: list[dict[str, Any]], rule_scores: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """Per rung the labels ranked: the members they kept, and those the rule alone would have
    kept from the same models (it may have gone on with others: what it would have kept at
    the end is then unknown, as those continuations never trained)."""
    differences = []
    for rung, by_rule in zip(rungs, rule_scores, strict=False):
        scored = [name for name in rung["scores"] if name != SOURCE_ONLY]
        kept = [name for name in scored if name not in rung["dropped"]]
        ranked = sorted(scored, key=lambda name: by_rule[name], reverse=True)
        differences.append(
            {"epoch": rung["epoch"], "labels_kept": kept, "rule_would_keep": ranked[: len(kept)]}
        )
    return differences


def model_file(name: str) -> str:
    """File name of a member's model (or source_only's) inside models/selection/ (auto runs)."""
    return f"{name}.pt"


def labeled_part(choice: PortfolioChoice) -> dict[str, Any]:
    """`labeled_selection` for the records, only when labeled target images chose."""
    return {"labeled_selection": choice.labeled} if choice.labeled else {}


def _epoch(choice: PortfolioChoice, name: str) -> int:
    """The epoch a model was kept at (a fine-tuned one: that of the model it started from)."""
    name = name.removesuffix(SUFFIX)
    return 0 if name == SOURCE_ONLY else int(choice.records[name]["selected_epoch"])


def auto_selection_record(choice: PortfolioChoice) -> dict[str, Any]:
    """models/selection/record.json of an auto run: what each rule picked (evaluate scores
    every model, and so every rule's choice)."""
    return {
        "method": AUTO_METHOD,
        "rule": choice.rule,
        "chosen": choice.chosen,
        "selected_epoch": _epoch(choice, choice.chosen),
        "fell_back_to_source": choice.chosen_member == SOURCE_ONLY,
        "warnings": choice.warnings,
        "budget": choice.budget,
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
        **labeled_part(choice),
    }


# what metrics/adapt.json says of each member: its choice, its rung, what this run trained
MEMBER_METRICS = ("selected_epoch", "trained_to_epoch", "resumed_after_epoch", "train_seconds")


def auto_metrics(choice: PortfolioChoice) -> dict[str, Any]:
    """metrics/adapt.json of an auto run: the choice, every model's scores, the warnings."""
    return {
        "method": AUTO_METHOD,
        "chosen": choice.chosen,
        "rule": choice.rule,
        # the rule's score of the kept model (fine-tuned on labels: of the model it started from)
        "selected_score": choice.scores[choice.rule][choice.chosen_member],
        "source_model_score": choice.scores[choice.rule][SOURCE_ONLY],
        "negative_transfer_suspected": choice.chosen_member == SOURCE_ONLY,
        "fell_back_to_source": choice.chosen_member == SOURCE_ONLY,
        "picks": choice.picks,
        "scores": choice.scores,
        "members": {
            m: {k: r[k] for k in (*MEMBER_METRICS, "warnings")} for m, r in choice.records.items()
        },
        "train_seconds": round(sum(r["train_seconds"] for r in choice.records.values()), 3),
        "budget": choice.budget,
        "warnings": choice.warnings,
        **labeled_part(choice),
    }


def log_scores(live: Any, choice: PortfolioChoice) -> None:
    """The configured rule's score of every model, as a dvclive bar plot."""
    rows = [{"model": name, "score": s} for name, s in choice.scores[choice.rule].items()]
    live.log_plot(f"{choice.rule}_by_model", rows, x="score", y="model", template="bar_horizontal")
