"""Label-free warnings: each check on hand-made predictions, and whole runs on toy models."""

from __future__ import annotations

import pytest
import torch

from adaptflow.adapt.diagnostics import (
    collapsed_predictions,
    disagreeing_members,
    effective_classes,
    mean_pairwise_agreement,
    method_warnings,
    portfolio_disagreement,
    source_accuracy_collapse,
)
from adaptflow.adapt.portfolio import portfolio_warnings
from adaptflow.models.classifier import Classifier
from tests.helpers.toy import CPU, bars_pool, evidence_of, one_hot_logits, toy_spec


def test_a_collapsed_model_is_flagged_and_a_healthy_one_is_not():
    source = one_hot_logits([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    healthy = one_hot_logits([0, 1, 2, 2, 1, 2, 0, 1, 0, 0])
    collapsed = one_hot_logits([1] * 9 + [0])
    assert effective_classes(source) == pytest.approx(3 * 0.99, abs=0.1)
    assert collapsed_predictions(healthy, source) is None
    warning = collapsed_predictions(collapsed, source)
    assert warning.startswith("collapsed predictions") and "1.4 effective classes" in warning


def test_disagreement_and_source_collapse_are_flagged_past_their_thresholds():
    chosen = one_hot_logits([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    assert disagreeing_members(chosen, chosen.softmax(1), "others") is None
    shifted = one_hot_logits([1, 2, 0, 1, 2, 0, 0, 1, 2, 0])
    assert "only 40%" in disagreeing_members(chosen, shifted.softmax(1), "the others do")
    assert source_accuracy_collapse(0.9, 0.95) is None
    assert "0.09 on source validation" in source_accuracy_collapse(0.09, 0.96)


class LeftRight(Classifier):
    """Class 1 when the right half is brighter than the left (right on `bars_pool` images);
    `inverted` gets every image wrong; `constant` calls every image class 0 (collapsed)."""

    def __init__(self, mode: str = "right") -> None:
        super().__init__(toy_spec())
        self.mode = mode

    def features(self, images):
        half = images.shape[-1] // 2
        left, right = images[..., :half].mean((1, 2, 3)), images[..., half:].mean((1, 2, 3))
        return torch.stack([left, right], 1)

    def head(self, features):  # type: ignore[override]
        margin = (features[:, 1] - features[:, 0]) * 10
        if self.mode == "inverted":
            margin = -margin
        if self.mode == "constant":
            margin = torch.full_like(margin, -5.0)
        return torch.stack([-margin, margin], 1)

    def forward(self, images):
        return self.head(self.features(images))


def test_a_collapsed_or_source_forgetting_one_method_run_gets_its_warnings():
    source, target = bars_pool("s", 40), bars_pool("t", 40, labeled=False, seed=1)
    right = LeftRight()
    pools, settings = (source, target), (CPU, 64)
    collapsed = method_warnings(
        LeftRight("constant"), right, pools, *settings, ("im", False, False)
    )
    assert len(collapsed) == 1 and collapsed[0].startswith("collapsed predictions")
    forgot = method_warnings(LeftRight("inverted"), right, pools, *settings, ("dev", True, False))
    assert forgot[0].startswith("source accuracy collapsed: 0.00 on source validation")
    assert "(dev) prefers the unadapted source model" in forgot[1] and len(forgot) == 2
    assert method_warnings(right, right, pools, *settings, ("dev", False, False)) == []
    source_free = method_warnings(
        LeftRight("inverted"), right, (None, target), *settings, ("im", 0, 0)
    )
    assert source_free == []  # a source-free method's source accuracy is never measured


def test_a_portfolio_whose_members_disagree_is_flagged():
    labels = [[0, 1, 2, 0, 1, 2, 0, 1, 2, 0], [1, 2, 0, 1, 2, 0, 0, 1, 2, 0], [2, 0, 1, 2, 0, 1]]
    logits = [one_hot_logits(x + [0] * (10 - len(x))) for x in labels]
    assert mean_pairwise_agreement(logits[:1]) is None
    assert mean_pairwise_agreement([logits[0], logits[0].clone()]) is None  # one distinct model
    warning = portfolio_disagreement(logits)
    assert warning.startswith("members disagree") and "expect low target accuracy" in warning
    close = one_hot_logits([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])  # 90% alike
    assert portfolio_disagreement([logits[0], logits[0], close]) is None


def test_the_portfolio_warns_when_its_rule_keeps_the_source_model():
    evidence = evidence_of({"source_only": [0, 1, 2, 0], "shot": [0, 1, 2, 0]})
    warnings = portfolio_warnings(evidence, "source_only", "mixval")
    assert len(warnings) == 1 and "prefers the unadapted source model" in warnings[0]
    assert portfolio_warnings(evidence, "shot", "mixval") == []


def test_with_labels_the_disagreement_warnings_give_way_to_the_labeled_estimate():
    evidence = evidence_of(
        {
            "source_only": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
            "shot": [1, 2, 0, 1, 2, 0, 0, 1, 2, 0],
            "mcc": [2, 0, 1, 2, 0, 1, 2, 0, 1, 1],
        }
    )
    unlabeled = portfolio_warnings(evidence, "shot", "mixval")
    assert any(w.startswith("members disagree") for w in unlabeled)
    assert portfolio_warnings(evidence, "shot", "mixval", labeled=True) == []
