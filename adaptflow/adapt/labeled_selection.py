"""Choosing among the portfolio's models with a few labeled target images.

The labeled images are the user's labels file (validated into data/target_labels.csv, by
content hash, with an importance weight each) and the `adapt.target_labeled_per_class`
images. Labels alone decide poorly at 8 or 24 images: two models right on every labeled image
tie, and a difference of one image is noise. So the posterior of each model's target accuracy
combines

- the labels, paired across models (one Bayesian bootstrap over the labeled images, Rubin
  1981, of the importance-weighted hits): a labeled image that separates two models moves
  both at once, as it should;
- a prior from the label-free consensus (as CODA does, Kay et al. 2025): each model's
  agreement with the adapted members' consensus, as a Beta with `PRIOR_CONCENTRATION`, worth
  `PRIOR_LABELS` labeled images.

`p_best` is the share of posterior draws in which a model is the most accurate; adapt keeps the
most probable. The kept model's accuracy estimate is the importance-weighted share it gets
right (each image counts (1/n)/q, which is 1 on average over how it was drawn: unbiased),
with a Jeffreys interval at the weights' effective sample size (Kish): images that
`adaptflow label` chose for being hard count for less, so the estimate is not pulled down by
them. No target test image is ever among the labeled ones (validate refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from adaptflow.adapt.rules import Evidence, adapted_consensus
from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import load_torch
from adaptflow.data.pools import ImagePool, load_pool
from adaptflow.models.classifier import Classifier
from adaptflow.models.outputs import predict

PRIOR_LABELS = 4.0  # the consensus counts as this many labeled images
PRIOR_CONCENTRATION = 20.0  # how sure the prior is of each model's accuracy (Beta's a + b)
DRAWS = 4000
CONFIDENCE = 0.95
BATCH = 256


@dataclass
class LabeledTarget:
    """Labeled target images, their importance weights, and where they came from."""

    pool: ImagePool
    weights: torch.Tensor
    from_file: int  # labels/target.csv
    from_per_class: int  # adapt.target_labeled_per_class
    weighted: bool  # some were chosen by `adaptflow label`, not at random

    def __len__(self) -> int:
        return len(self.pool)


def read_target_labels() -> pd.DataFrame:
    """data/target_labels.csv: the labels validate checked (sha256, label, weight)."""
    if not paths.TARGET_LABELS.is_file():
        raise AdaptflowError(f"{paths.TARGET_LABELS}: missing; rerun `dvc repro` (validate)")
    return pd.read_csv(paths.TARGET_LABELS, dtype={"sha256": str, "label": str})


def load_labeled_target(table: pd.DataFrame) -> LabeledTarget | None:
    """The labeled target images of `table` (sha256, label, weight) found in the unlabeled
    pool, with the `target_labeled_per_class` images; None when there are none."""
    per_class = load_pool(paths.TARGET_LABELED, "target labeled", labeled=True)
    unlabeled = load_torch(paths.TARGET_TRAIN, mmap=True)
    index = {sha: i for i, sha in enumerate(unlabeled["sha256"])}
    rows = table[table["sha256"].isin(index)]
    if not len(rows) and not len(per_class):
        return None
    class_index = {name: i for i, name in enumerate(per_class.classes)}
    picked = torch.tensor([index[sha] for sha in rows["sha256"]], dtype=torch.long)
    images = torch.cat([unlabeled["images"].index_select(0, picked), per_class.images])
    labels = torch.cat(
        [torch.tensor([class_index[c] for c in rows["label"]], dtype=torch.long), per_class.labels]
    )
    weights = torch.cat(
        [torch.tensor(rows["weight"].to_numpy(dtype=float)), torch.ones(len(per_class))]
    ).float()
    pool = ImagePool("labeled target", images, labels, per_class.classes)
    return LabeledTarget(
        pool,
        weights,
        from_file=len(rows),
        from_per_class=len(per_class),
        weighted=bool((weights != 1).any()),
    )


def correctness(
    models: dict[str, Classifier], labeled: LabeledTarget, device: torch.device
) -> torch.Tensor:
    """(models, images) bool: which labeled images each model gets right."""
    rows = []
    for model in models.values():
        outputs = predict(model.to(device), labeled.pool, device, BATCH)
        rows.append(outputs.logits.argmax(1) == labeled.pool.labels)
    return torch.stack(rows)


def posterior_accuracies(
    correct: torch.Tensor, weights: torch.Tensor, prior: torch.Tensor, seed: int = 0
) -> torch.Tensor:
    """(DRAWS, models) draws of each model's target accuracy: the labels' paired Bayesian
    bootstrap (importance-weighted) plus the consensus prior worth PRIOR_LABELS images."""
    rng = np.random.default_rng(seed)
    dirichlet = torch.from_numpy(rng.exponential(size=(DRAWS, correct.shape[1]))).float()
    labeled_hits = (dirichlet * weights) @ correct.T.float()
    mean = prior.clamp(0.01, 0.99).numpy()
    a, b = mean * PRIOR_CONCENTRATION, (1 - mean) * PRIOR_CONCENTRATION
    prior_draws = torch.from_numpy(rng.beta(a, b, size=(DRAWS, len(mean)))).float()
    total = dirichlet.sum(1, keepdim=True) + PRIOR_LABELS
    return (labeled_hits + PRIOR_LABELS * prior_draws) / total


def probability_best(draws: torch.Tensor) -> torch.Tensor:
    """Share of draws in which each model is the most accurate."""
    winners = draws.argmax(1)
    return torch.bincount(winners, minlength=draws.shape[1]).float() / len(draws)


def accuracy_estimate(correct: torch.Tensor, weights: torch.Tensor) -> dict[str, float]:
    """Importance-weighted accuracy of one model, with a Jeffreys interval at the weights'
    effective sample size. The weights' expectation is 1 under the draws that chose the
    images, so the plain weighted mean is unbiased; normalising by the weights' own sum would
    bias it towards the over-drawn hard images at a few labels."""
    from scipy.special import betaincinv

    estimate = min(1.0, float((weights * correct.float()).mean()))
    effective = float(weights.sum()) ** 2 / float((weights**2).sum())
    a, b = estimate * effective + 0.5, (1 - estimate) * effective + 0.5
    tail = (1 - CONFIDENCE) / 2
    return {
        "estimate": round(estimate, 4),
        "low": round(float(betaincinv(a, b, tail)), 4),
        "high": round(float(betaincinv(a, b, 1 - tail)), 4),
        "effective_labels": round(effective, 1),
    }


@dataclass
class LabeledChoice:
    names: list[str]
    mean_accuracy: dict[str, float]  # posterior mean: the score successive halving ranks by
    p_best: dict[str, float]
    correct: torch.Tensor

    @property
    def kept(self) -> str:
        return max(self.names, key=lambda name: (self.p_best[name], self.mean_accuracy[name]))


def choose_with_labels(
    evidence: Evidence,
    labeled: LabeledTarget | None,
    device: torch.device,
    seed: int,
    among: list[str] | None = None,
) -> LabeledChoice:
    """The posterior accuracy and probability of being the best of each model `among` (default:
    all of `evidence`), from the labels and the consensus of every model in `evidence`."""
    names = among if among is not None else list(evidence.models)
    if labeled is None:  # the prior alone: which model `adaptflow label` asks about first
        correct, weights = torch.zeros(len(names), 0, dtype=torch.bool), torch.zeros(0)
    else:
        correct = correctness({name: evidence.models[name] for name in names}, labeled, device)
        weights = labeled.weights
    agreement = adapted_consensus(evidence)
    prior = torch.tensor([agreement[name] for name in names])
    return choice_from(names, correct, weights, prior, seed)


def choice_from(
    names: list[str], correct: torch.Tensor, weights: torch.Tensor, prior: torch.Tensor, seed: int
) -> LabeledChoice:
    """The posterior of `names` from their (models, labels) correctness, the labels' weights
    and the consensus prior (the benchmark calls this on saved predictions)."""
    draws = posterior_accuracies(correct, weights, prior, seed)
    mean, best = draws.mean(0), probability_best(draws)
    return LabeledChoice(
        names,
        {name: round(float(mean[i]), 4) for i, name in enumerate(names)},
        {name: round(float(best[i]), 4) for i, name in enumerate(names)},
        correct,
    )


def labeled_record(
    choice: LabeledChoice, labeled: LabeledTarget, label_free_pick: str
) -> dict[str, Any]:
    """`labeled_selection` of metrics/adapt.json and models/selection/record.json."""
    kept = choice.kept
    return {
        "labels": len(labeled),
        "from_labels_file": labeled.from_file,
        "from_target_labeled_per_class": labeled.from_per_class,
        "kept": kept,
        "p_best": choice.p_best,
        "posterior_mean_accuracy": choice.mean_accuracy,
        "label_free_pick": label_free_pick,
        "accuracy": {
            **accuracy_estimate(choice.correct[choice.names.index(kept)], labeled.weights),
            "confidence": CONFIDENCE,
            # True: weighted by how `adaptflow label` drew each image; else a random sample
            "importance_weighted": labeled.weighted,
        },
    }
