"""The labels put to work: fine-tune the kept model on the user's labeled target images.

With `adapt.portfolio.finetune_on_labels.epochs > 0` and labeled target images, `auto` trains
the model the labels kept a few epochs more with a semi-supervised method (default FixMatch:
cross-entropy on the labeled images, through the engine's labeled target batches, plus its
pseudo-label loss on the unlabeled pool), as one more candidate, `<kept>+labels`.

A model cannot be judged on the labels it trained on. So the labels are split first (seeded):
the fine-tune trains on `1 - held_out` of them, and the two models are compared on the rest by
a paired Bayesian bootstrap of the held-out labels (each importance-weighted): the probability
that the fine-tuned model gets more of them right. It is kept when that is above one half (a
tie keeps the original); its accuracy estimate then comes from the held-out labels alone.
Evaluate scores it on target test with every other model, so the report shows whether it
helped.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptflow.adapt.labeled_selection import (
    CONFIDENCE,
    DRAWS,
    LabeledTarget,
    accuracy_estimate,
    correctness,
)
from adaptflow.adapt.one_method import adaptation_job
from adaptflow.core.params import Params
from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier
from adaptflow.training.job import train_and_select

SUFFIX = "+labels"  # the candidate's name: the kept model's, with this
MIN_LABELS = 2  # one to train on, one to compare on


def finetuned_name(kept: str) -> str:
    return f"{kept}{SUFFIX}"


def is_finetuned(name: str) -> bool:
    """A model trained on the labels: never a candidate that the labels may score again."""
    return name.endswith(SUFFIX)


def chosen_by_labels(record: dict[str, Any]) -> str:
    """The candidate the labels kept (before any fine-tune on them), from `labeled_selection`."""
    return record["finetune"]["from"] if "finetune" in record else record["kept"]


def split_labels(labeled: LabeledTarget, held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the labeled images to train on and to hold out (each at least one)."""
    order = torch.randperm(len(labeled), generator=torch.Generator().manual_seed(seed)).tolist()
    count = min(max(1, round(held_out * len(order))), len(order) - 1)
    return sorted(order[count:]), sorted(order[:count])


def _subset(labeled: LabeledTarget, indices: list[int]) -> LabeledTarget:
    index = torch.tensor(indices, dtype=torch.long)
    pool = labeled.pool
    return LabeledTarget(
        ImagePool(pool.name, pool.images[index], pool.labels[index], pool.classes),
        labeled.weights[index],
        from_file=labeled.from_file,
        from_per_class=labeled.from_per_class,
        weighted=labeled.weighted,
    )


def finetune(
    model: Classifier, labeled: ImagePool, params: Params, device: torch.device
) -> Classifier:
    """`model` trained on as the adapt job of the configured method (its epochs), the labeled
    images as its labeled target batches; the epoch the configured validator prefers
    (label-free, as every run's)."""
    tuning = params.adapt.portfolio.finetune_on_labels
    adapt = params.adapt.model_copy(update={"method": tuning.method, "epochs": tuning.epochs})
    tuned = params.model_copy(update={"adapt": adapt})
    with tempfile.TemporaryDirectory(prefix="finetune-on-labels-") as checkpoints:
        # a short run in a scratch directory: no resuming
        job, _ = adaptation_job(tuned, Path(checkpoints), start=model, target_labeled=labeled)
        trained = train_and_select(job, tuned, device)
    assert trained is not None  # one process: the adapt stage runs the choice on rank 0 only
    return trained.snapshots[int(trained.fit.best[params.selection.validator]["epoch"])]


@dataclass
class Finetuned:
    name: str
    model: Classifier
    better: bool  # kept instead of the model it started from
    record: dict[str, Any]  # `finetune` of labeled_selection


def probability_better(correct: torch.Tensor, weights: torch.Tensor, seed: int) -> float:
    """Share of paired Bayesian-bootstrap draws over the held-out labels (importance-weighted)
    in which the second model of `correct` (2, N) gets more right than the first: 0 when the
    two get the same images right, so a tie keeps the model the fine-tune started from."""
    rng = np.random.default_rng(seed)
    dirichlet = torch.from_numpy(rng.exponential(size=(DRAWS, correct.shape[1]))).float()
    gain = (dirichlet * weights) @ (correct[1].float() - correct[0].float())
    return round(float((gain > 0).float().mean()), 4)


def finetune_kept(
    kept: str, model: Classifier, labeled: LabeledTarget, params: Params, device: torch.device
) -> Finetuned:
    """Fine-tune the kept model on part of the labels; compare the two on the rest."""
    tuning = params.adapt.portfolio.finetune_on_labels
    train, held = split_labels(labeled, tuning.held_out, params.seed)
    tuned = finetune(model, _subset(labeled, train).pool, params, device)
    name = finetuned_name(kept)
    held_out = _subset(labeled, held)
    correct = correctness({kept: model, name: tuned}, held_out, device)
    p_better = probability_better(correct, held_out.weights, params.seed)
    better = p_better > 0.5
    record = {
        "model": name,
        "from": kept,
        "method": tuning.method,
        "epochs": tuning.epochs,
        "trained_on": len(train),
        "held_out": len(held),
        "p_better": p_better,  # each held-out image weighted by how it was drawn
        "held_out_right": {n: int(correct[i].sum()) for i, n in enumerate([kept, name])},
        "kept": better,
    }
    if better:  # its estimate from the labels it did not train on
        record["accuracy"] = {
            **accuracy_estimate(correct[1], held_out.weights),
            "confidence": CONFIDENCE,
            "importance_weighted": labeled.weighted,
        }
    return Finetuned(name, tuned, better, record)
