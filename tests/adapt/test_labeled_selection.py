"""Choosing with a few labeled target images: the posterior, p_best, the accuracy estimate."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from adaptflow.adapt.labeled_selection import (
    accuracy_estimate,
    choose_with_labels,
    load_labeled_target,
    posterior_accuracies,
    probability_best,
)
from adaptflow.adapt.rules import gather_evidence
from adaptflow.core import paths
from adaptflow.core.devices import seed_everything
from adaptflow.core.io import load_torch
from adaptflow.data.pools import load_pool
from adaptflow.models.classifier import Classifier
from tests.helpers.toy import CPU, prepare_project, project_spec

UNIFORM = torch.ones(24)


def right_on(*counts: int, total: int = 24) -> torch.Tensor:
    """(models, total) correctness: model i right on its first counts[i] images."""
    return torch.stack([torch.arange(total) < count for count in counts])


def p_best(correct: torch.Tensor, prior: list[float], weights=UNIFORM) -> list[float]:
    return probability_best(posterior_accuracies(correct, weights, torch.tensor(prior))).tolist()


def test_a_model_the_labels_clearly_favour_is_best_with_high_probability():
    best = p_best(right_on(23, 17, 12), [0.8, 0.8, 0.8])
    assert best[0] > 0.95 and sum(best) == pytest.approx(1.0)


def test_labels_overrule_the_consensus_prior_but_a_tie_on_labels_is_left_to_it():
    assert p_best(right_on(14, 23), [0.95, 0.6])[1] > 0.9  # the consensus liked the wrong one
    tied = p_best(right_on(24, 24), [0.9, 0.7])
    assert 0.7 < tied[0] < 1.0  # the prior decides, without certainty


def test_a_one_image_difference_is_not_a_certainty():
    best = p_best(right_on(20, 19), [0.8, 0.8])
    assert 0.4 < best[0] < 0.9


def test_the_accuracy_estimate_is_the_weighted_share_with_an_honest_interval():
    perfect = accuracy_estimate(torch.ones(24, dtype=torch.bool), UNIFORM)
    assert perfect["estimate"] == 1.0 and 0.85 < perfect["low"] < 0.95 and perfect["high"] == 1.0
    half = accuracy_estimate(torch.arange(24) < 12, UNIFORM)
    assert half["estimate"] == 0.5 and half["low"] < 0.35 and half["high"] > 0.65
    # hard images drawn often (weight < 1) pull the estimate down less than their count says
    weights = torch.tensor([0.25] * 12 + [1.75] * 12)
    weighted = accuracy_estimate(torch.arange(24) >= 12, weights)
    assert weighted["estimate"] == pytest.approx(0.875)
    assert weighted["effective_labels"] < 24


def test_the_labeled_target_is_the_labels_file_images_and_the_per_class_ones(tmp_path, monkeypatch):
    prepare_project(tmp_path, scramble=False)
    monkeypatch.chdir(tmp_path)
    pool = load_torch(paths.TARGET_TRAIN)
    table = pd.DataFrame(
        {"sha256": pool["sha256"][:3], "label": ["c", "a", "b"], "weight": [1.0, 2.0, 3.0]}
    )
    labeled = load_labeled_target(table)
    per_class = len(load_pool(paths.TARGET_LABELED, "k", labeled=True))
    assert len(labeled) == 3 + per_class and labeled.from_file == 3
    assert torch.equal(labeled.pool.images[:3], pool["images"][:3])
    assert labeled.pool.labels[:3].tolist() == [2, 0, 1]
    assert labeled.weighted and labeled.weights[:3].tolist() == [1.0, 2.0, 3.0]
    assert load_labeled_target(table.iloc[:0]) is None or per_class > 0

    seed_everything(0)
    models = {name: Classifier(project_spec()) for name in ("one", "two")}
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    evidence = gather_evidence(models, None, target, CPU, 0)
    choice = choose_with_labels(evidence, labeled, CPU, seed=0)
    assert sum(choice.p_best.values()) == pytest.approx(1.0, abs=1e-3)
    assert choice.kept == max(choice.p_best, key=choice.p_best.get)
    prior_only = choose_with_labels(evidence, None, CPU, seed=0)
    assert set(prior_only.p_best) == {"one", "two"}


def test_the_record_says_where_the_labels_and_the_rule_went_on_with_different_members():
    from adaptflow.adapt.portfolio import rung_differences

    rungs = [
        {
            "epoch": 2,
            "scores": {"source_only": 0.5, "tent": 0.9, "mcc": 0.8, "adabn": 0.7},
            "dropped": ["adabn"],
        },
        {"epoch": 4, "scores": {"source_only": 0.5, "tent": 0.9, "mcc": 0.95}, "dropped": ["tent"]},
    ]
    by_rule = [{"source_only": 0.6, "tent": 0.9, "mcc": 0.1, "adabn": 0.8}, {"tent": 1, "mcc": 0}]
    assert rung_differences(rungs, by_rule) == [
        {"epoch": 2, "labels_kept": ["tent", "mcc"], "rule_would_keep": ["tent", "adabn"]},
        {"epoch": 4, "labels_kept": ["mcc"], "rule_would_keep": ["tent"]},
    ]
