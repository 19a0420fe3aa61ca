"""The label-free rules that choose among models, on hand-made predictions and toy models."""

from __future__ import annotations

import pytest
import torch

from adaptflow.adapt.rules import (
    RULES,
    adapted_consensus,
    adapted_voters,
    check_rule,
    ensemble_agreement,
    gather_evidence,
    mixed_sample_accuracy,
    pick,
)
from adaptflow.core.errors import AdaptflowError
from adaptflow.models.classifier import Classifier
from tests.helpers.toy import CPU, bars_pool, evidence_of, toy_spec


def test_ensemble_agreement_prefers_the_model_closest_to_the_consensus():
    evidence = evidence_of(
        {
            "a": [0, 1, 2, 0, 1, 2],
            "b": [0, 1, 2, 0, 1, 0],
            "c": [0, 1, 2, 0, 2, 2],
            "collapsed": [0, 0, 0, 0, 0, 1],
        }
    )
    scores = ensemble_agreement(evidence)
    assert scores["a"] == pytest.approx(1.0)  # the consensus is a's labelling
    assert scores["b"] == scores["c"] == pytest.approx(5 / 6)
    assert scores["collapsed"] == pytest.approx(2 / 6)
    assert pick(scores) == "a"


def test_adapted_consensus_is_not_outvoted_by_copies_of_the_source_model():
    unadapted, adapted = [0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 0]
    evidence = evidence_of(
        {
            "source_only": unadapted,
            "adabn": unadapted,  # fell back to the source model
            "tent": unadapted,  # fell back too
            "coral": adapted,
            "dan": [0, 1, 1, 2, 2, 2],
        }
    )
    assert adapted_voters(evidence) == ["coral", "dan"]
    assert pick(ensemble_agreement(evidence)) == "source_only"  # three votes for one model
    scores = adapted_consensus(evidence)
    assert pick(scores) == "coral" and scores["source_only"] == pytest.approx(3 / 6)


def test_ties_go_to_the_earlier_model():
    assert pick({"source_only": 0.5, "shot": 0.5, "mcc": 0.4}) == "source_only"


class FirstPixel(Classifier):
    """Class 1 when the top-left pixel is bright (> `threshold`), else class 0."""

    def __init__(self, threshold: float) -> None:
        super().__init__(toy_spec())
        self.threshold = threshold

    def features(self, images):
        return images[:, :, 0, 0]

    def head(self, features):  # type: ignore[override]
        bright = (features[:, 0] > self.threshold).float()
        return torch.stack([1 - bright, bright], 1) * 10

    def forward(self, images):
        return self.head(self.features(images))


def test_mixval_rewards_a_boundary_that_follows_the_larger_part_of_a_mix():
    images = torch.zeros(8, 1, 16, 16)
    images[::2, 0, 0, 0] = 1.0  # alternate bright and dark: mirrored pairs differ
    labels = (images[:, 0, 0, 0] > 0.5).long()
    centred = mixed_sample_accuracy(FirstPixel(0.5), images, labels, CPU)
    skewed = mixed_sample_accuracy(FirstPixel(0.3), images, labels, CPU)
    assert centred == 1.0  # 0.55 bright -> bright, 0.45 bright -> dark, as the labels say
    assert skewed == 0.5  # 0.45 bright is called bright too: half the probes fail
    assert mixed_sample_accuracy(FirstPixel(0.5), images, torch.zeros(8).long(), CPU) == 0.0


def test_every_rule_scores_real_models_and_an_unknown_rule_is_refused():
    torch.manual_seed(0)
    models = {"source_only": Classifier(toy_spec()), "other": Classifier(toy_spec())}
    source, target = bars_pool("s", 40), bars_pool("t", 40, labeled=False, shift=0.2)
    evidence = gather_evidence(models, source, target, CPU, max_samples=32)
    assert evidence.target_images.shape == (32, 1, 16, 16)
    for name, rule in RULES.items():
        scores = rule.score(evidence)
        assert set(scores) == set(models), name
        assert all(isinstance(s, float) for s in scores.values()), name
    with pytest.raises(AdaptflowError, match="unknown rule 'vote'.*ensemble_agreement"):
        check_rule("vote")


def test_known_predictions_are_reused_for_the_same_model_and_made_for_a_new_one():
    torch.manual_seed(0)
    source_model, dropped = Classifier(toy_spec()), Classifier(toy_spec())
    source, target = bars_pool("s", 40), bars_pool("t", 40, labeled=False, shift=0.2)
    known = {}
    rung = gather_evidence(
        {"source_only": source_model, "m": dropped}, source, target, CPU, 32, known
    )
    trained_on = Classifier(toy_spec())  # a survivor trained further: a new model object
    final = {"source_only": source_model, "m": dropped, "s": trained_on}
    again = gather_evidence(final, source, target, CPU, 32, known)
    assert again.predictions["m"] is rung.predictions["m"]
    assert again.predictions["source_only"] is rung.predictions["source_only"]
    fresh = gather_evidence(final, source, target, CPU, 32)
    for name in final:  # what was reused is what predicting again gives
        assert torch.equal(
            again.predictions[name].target.logits, fresh.predictions[name].target.logits
        )
