"""Label-free rules that choose among adapted models of different methods.

A rule scores every model at once from its predictions on the same fixed samples (the
source validation split and the unlabeled target pool), higher is better; none sees a target
label. `adapt.method: auto` (adaptflow.adapt.portfolio) and the shifts benchmark use them.

  source_accuracy, entropy, info_max, snd, dev
                      the per-epoch validators of adaptflow.training.validators, each model
  ensemble_agreement  how often the model's prediction on a target image agrees with the
                      ensemble's (mean softmax of all models); EnsV, Hu et al. 2023
  adapted_consensus   the same against the consensus of the distinct adapted members only:
                      the source model (and any member that fell back to it) is scored but does
                      not vote, so a portfolio where many methods barely moved cannot outvote
                      the ones that adapted
  mixval              MixVal's inter-cluster probe (Hu et al., NeurIPS 2023): mix pairs of target
                      images the model labels differently, 55:45, and count how often it gives
                      the mix the label of its larger part
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import SOURCE_ONLY
from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier
from adaptflow.models.outputs import predict
from adaptflow.training.validators import VALIDATORS, Predictions

MIX_RATIO = 0.55  # MixVal's fixed mixing weight: probes close to the decision boundary
BATCH = 256


@dataclass
class Evidence:
    """What rules read: each model's predictions on the same fixed samples, and the models
    with those target images for rules that probe the models."""

    predictions: dict[str, Predictions]
    models: dict[str, Classifier]
    target_images: torch.Tensor  # the scored target images, float in [0, 1], on the CPU
    device: torch.device


def gather_evidence(
    models: dict[str, Classifier],
    source_val: ImagePool | None,
    target: ImagePool,
    device: torch.device,
    max_samples: int,
    known: dict[int, tuple[Classifier, Predictions]] | None = None,
) -> Evidence:
    """Predictions of every model on (the first `max_samples` of) source val and target.
    `known`: predictions made before on the same pools, by model object (a model trained on is
    a new object, never changed in place), reused and filled in; successive halving scores a
    dropped member again at the end."""
    known = {} if known is None else known
    predictions = {}
    for name, model in models.items():
        if id(model) not in known:
            model.to(device)
            source = None
            if source_val is not None:
                source = predict(model, source_val, device, BATCH, max_samples)
            target_predictions = predict(model, target, device, BATCH, max_samples)
            known[id(model)] = (model, Predictions(source, target_predictions))  # keeps id unique
        predictions[name] = known[id(model)][1]
    count = min(max_samples, len(target)) if max_samples > 0 else len(target)
    images = target.images[:count].float().div(255.0)
    return Evidence(predictions, models, images, device)


def _per_model(validator: str) -> Callable[[Evidence], dict[str, float]]:
    def rule(evidence: Evidence) -> dict[str, float]:
        score = VALIDATORS[validator].score
        return {name: score(p) for name, p in evidence.predictions.items()}

    rule.__doc__ = f"The {validator} validator of each model."
    return rule


def ensemble_probabilities(evidence: Evidence, voters: list[str] | None = None) -> torch.Tensor:
    """Mean softmax over the `voters` (default: every model) on the target sample."""
    names = voters if voters is not None else list(evidence.predictions)
    probs = [evidence.predictions[name].target.logits.softmax(1) for name in names]
    return torch.stack(probs).mean(0)


def adapted_voters(evidence: Evidence) -> list[str]:
    """Models that adaptation actually produced, each distinct one once: not the source
    model, nor a member that fell back to it (same predictions), nor repeats of one another."""
    kept: list[str] = [SOURCE_ONLY] if SOURCE_ONLY in evidence.predictions else []
    labels = {name: p.target.logits.argmax(1) for name, p in evidence.predictions.items()}
    for name in evidence.predictions:
        if all(not torch.equal(labels[name], labels[other]) for other in kept):
            kept.append(name)
    voters = [name for name in kept if name != SOURCE_ONLY]
    return voters or list(evidence.predictions)


def _agreement_with(evidence: Evidence, consensus: torch.Tensor) -> dict[str, float]:
    labels = consensus.argmax(1)
    return {
        name: float((p.target.logits.argmax(1) == labels).float().mean())
        for name, p in evidence.predictions.items()
    }


def ensemble_agreement(evidence: Evidence) -> dict[str, float]:
    """Share of target images where a model's argmax equals the ensemble's (all vote)."""
    return _agreement_with(evidence, ensemble_probabilities(evidence))


def adapted_consensus(evidence: Evidence) -> dict[str, float]:
    """Share of target images where a model's argmax equals the consensus of the distinct
    adapted members (the unadapted source model is scored, but does not vote)."""
    return _agreement_with(evidence, ensemble_probabilities(evidence, adapted_voters(evidence)))


@torch.no_grad()
def mixed_sample_accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> float:
    """MixVal inter-cluster probe: accuracy on 55:45 mixes of differently labeled image pairs
    (each image with its mirror in the sample order), against the larger part's label.
    A model that gives every image one label has no such pairs and scores 0."""
    partner = torch.arange(len(images)).flip(0)
    differ = labels != labels[partner]
    if not differ.any():
        return 0.0
    first, second = torch.nonzero(differ).squeeze(1), partner[differ]
    was_training = model.training
    model.eval()
    hits = 0
    for start in range(0, len(first), BATCH):
        a, b = first[start : start + BATCH], second[start : start + BATCH]
        mixed = MIX_RATIO * images[a] + (1 - MIX_RATIO) * images[b]
        predicted = model(mixed.to(device)).argmax(1).cpu()
        hits += int((predicted == labels[a]).sum())
    model.train(was_training)
    return hits / len(first)


def mixval(evidence: Evidence) -> dict[str, float]:
    """MixVal's inter-cluster score of each model (its own target predictions as labels)."""
    return {
        name: mixed_sample_accuracy(
            evidence.models[name],
            evidence.target_images,
            p.target.logits.argmax(1),
            evidence.device,
        )
        for name, p in evidence.predictions.items()
    }


@dataclass(frozen=True)
class Rule:
    score: Callable[[Evidence], dict[str, float]]
    needs_source: bool


RULES: dict[str, Rule] = {
    **{
        name: Rule(_per_model(name), validator.needs_source)
        for name, validator in VALIDATORS.items()
    },
    "ensemble_agreement": Rule(ensemble_agreement, needs_source=False),
    "adapted_consensus": Rule(adapted_consensus, needs_source=False),
    "mixval": Rule(mixval, needs_source=False),
}


def check_rule(name: str) -> Rule:
    """The rule called `name`, or a one-line error listing the known ones."""
    if name not in RULES:
        raise AdaptflowError(
            f"adapt.portfolio.rule: unknown rule {name!r}; choose one of {', '.join(RULES)}"
        )
    return RULES[name]


def pick(scores: dict[str, float]) -> str:
    """The best-scoring model; ties go to the earlier one (portfolio order)."""
    return max(scores, key=lambda name: (scores[name], -list(scores).index(name)))
