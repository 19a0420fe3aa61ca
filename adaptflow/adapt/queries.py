"""Active queries for `adaptflow label`: which target-train images to ask the user about next.

The criterion is where the likely best models disagree: for an unlabeled image x,

    score(x) = sum over pairs c != c' of p_best(c) * p_best(c') * [c and c' predict x differently]

the chance that two models drawn by their probability of being the best (adaptflow/adapt/
labeled_selection.py, with the labels so far) disagree on x. A label where they all agree
changes no model's standing; one where the favourites split moves p_best most. It is a cheap
form of consensus-driven active model selection (CODA, Kay et al. 2025), which scores the
expected information about the best model. p_best is tempered first, half of it spread evenly
(TEMPER): before the first labels it is the consensus prior's, which can be sure of the wrong
favourites, and pairs outside them must still get asked about. On the suite (8 settings of
TEMPER, UNIFORM_SHARE and the prior's strength, 120 simulated users each) this setting had the
lowest regret at 24 labels (1.0 against 1.4 untempered); it was chosen on the benchmark it is
reported on, where other simulated users then gave 1.6 (results/labels.json).

Each round draws its images rather than taking the top scores: one at a time without
replacement, each from q = (1 - UNIFORM_SHARE) * score / sum(score) + UNIFORM_SHARE / n over
the n images left (a defensive mixture, Hesterberg 1995), and records q and n for every draw.
Adapt weighs each labeled image by (1/n)/q (importance weights, as in Active Testing, Kossen
et al. 2021; their mean is 1 over the draws), so that the accuracy estimate is not pulled down
by the hard images the criterion prefers; the uniform share bounds every weight by
1 / UNIFORM_SHARE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adaptflow.adapt.labeled_selection import LabeledTarget, choose_with_labels
from adaptflow.adapt.rules import Evidence

ROUND_SIZE = 8
UNIFORM_SHARE = 0.2
TEMPER = 0.5  # the share of p_best spread evenly over the models before scoring


def disagreement(predicted: torch.Tensor, p_best: torch.Tensor) -> torch.Tensor:
    """(N,) score of each image from the models' (models, N) predicted classes."""
    p_best = (1 - TEMPER) * p_best + TEMPER / len(p_best)
    score = torch.zeros(predicted.shape[1])
    for first in range(len(p_best)):
        for second in range(first + 1, len(p_best)):
            differ = (predicted[first] != predicted[second]).float()
            score += 2 * float(p_best[first] * p_best[second]) * differ
    return score


@dataclass(frozen=True)
class Draw:
    index: int  # into the candidates
    probability: float  # q of this image when it was drawn
    pool: int  # images left to draw from at that moment


def draw_round(scores: torch.Tensor, count: int, seed: int) -> list[Draw]:
    """`count` images drawn one at a time without replacement from the defensive mixture."""
    rng = np.random.default_rng(seed)
    left = np.ones(len(scores), dtype=bool)
    values = scores.double().numpy()
    draws = []
    for _ in range(min(count, len(scores))):
        n = int(left.sum())
        total = float(values[left].sum())
        preference = values / total if total > 0 else np.full(len(values), 1.0 / n)
        q = np.where(left, (1 - UNIFORM_SHARE) * preference + UNIFORM_SHARE / n, 0.0)
        q = q / q.sum()  # rounding only: the mixture over the images left sums to 1
        index = int(rng.choice(len(q), p=q))
        draws.append(Draw(index, float(q[index]), n))
        left[index] = False
    return draws


@dataclass
class Round:
    """The images to ask about next (paths relative to data.target), how each was drawn, and
    where the choice stands before their answers."""

    paths: list[str]
    draws: list[Draw]
    p_best: dict[str, float]
    favourite: str


def plan_round(
    evidence: Evidence,
    target_sha256: list[str],
    unlabeled_paths: dict[str, str],
    labeled: LabeledTarget | None,
    seed: int,
    count: int = ROUND_SIZE,
) -> Round:
    """Draw the next `count` images among `unlabeled_paths` (sha256 -> path; images of the
    target pool not asked about yet), by the disagreement of the models of `evidence` (their
    predictions on the whole pool, in `target_sha256` order) weighted by p_best so far."""
    standing = choose_with_labels(evidence, labeled, evidence.device, seed)
    names = list(evidence.models)
    p_best = torch.tensor([standing.p_best[name] for name in names])
    predicted = torch.stack([evidence.predictions[n].target.logits.argmax(1) for n in names])
    first_of = {}
    for index, sha in enumerate(target_sha256):
        if sha in unlabeled_paths:
            first_of.setdefault(sha, index)  # an image stored twice is asked about once
    candidates = list(first_of.values())
    draws = draw_round(disagreement(predicted[:, candidates], p_best), count, seed)
    picked = [unlabeled_paths[target_sha256[candidates[d.index]]] for d in draws]
    return Round(picked, draws, standing.p_best, standing.kept)
