"""Label-free warnings: signs that adaptation failed, read without a single target label.

Each check looks at predictions the adapt stage already has and returns one plain sentence, or
None when nothing is suspicious. `metrics/adapt.json` lists them (`warnings`, empty when all is
well) and reports/evaluate.md puts them at the top. The thresholds were set once from the
aggregate of `python -m adaptflow.bench shifts` (docs/hard-shifts.md) and `... warnings`
(their false alarms and misses on the suite, results/warnings.json), never per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier
from adaptflow.models.outputs import Outputs, predict

if TYPE_CHECKING:
    from adaptflow.adapt.one_method import Adaptation
    from adaptflow.core.params import Params

BATCH = 256

# the adapted model spreads its target predictions over fewer than this share of the classes
# the source model spreads them over (effective number of classes, see below)
COLLAPSE_RATIO = 0.5
# the chosen model gives the same label as the other members' consensus on fewer than this
# share of target images
MIN_AGREEMENT = 0.6
# a method that trains on source labels keeps less than this share of the source model's
# accuracy on the source validation split
SOURCE_KEPT = 0.5
# the portfolio's distinct models label target images alike, on average over pairs, less
# often than this: an estimate of how often they are right (see `portfolio_disagreement`).
# Recalibrated on the suite (`python -m adaptflow.bench warnings`, results/warnings.json): over
# 1,440 portfolios 0.58 made the fewest errors (2% false alarms, 2% misses of a kept model under
# 60%); 0.65 cried wolf on 17% of the portfolios whose kept model was fine. Thin evidence: which
# portfolios are poor follows the shift (MNIST-M and corrupted digits), so it rests on 4 shifts
MIN_PORTFOLIO_AGREEMENT = 0.58


def effective_classes(logits: torch.Tensor) -> float:
    """exp(entropy) of the predicted-class histogram: 1 when every image gets one class, k when
    k classes are predicted equally often."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).float()
    shares = counts[counts > 0] / counts.sum()
    return math.exp(float(-(shares * shares.log()).sum()))


def collapsed_predictions(adapted: torch.Tensor, source: torch.Tensor) -> str | None:
    """Target logits of the adapted and the source model: did the predictions collapse?"""
    after, before = effective_classes(adapted), effective_classes(source)
    if after >= COLLAPSE_RATIO * before:
        return None
    return (
        f"collapsed predictions: on target images the adapted model predicts about "
        f"{after:.1f} effective classes, the source model {before:.1f}; adaptation may have "
        "merged classes"
    )


def agreement(first: torch.Tensor, second: torch.Tensor) -> float:
    """Share of images two sets of logits label alike."""
    return float((first.argmax(1) == second.argmax(1)).float().mean())


def disagreeing_members(chosen: torch.Tensor, consensus: torch.Tensor, what: str) -> str | None:
    """The chosen model's target logits against a consensus (probabilities or logits)."""
    share = agreement(chosen, consensus)
    if share >= MIN_AGREEMENT:
        return None
    return (
        f"members disagree: the chosen model labels only {100 * share:.0f}% of target images "
        f"as {what} do; the choice is uncertain"
    )


def mean_pairwise_agreement(logits: list[torch.Tensor]) -> float | None:
    """Mean agreement over pairs of models that do not label every image alike (a member
    that fell back to the source model counts once); None with fewer than two such."""
    distinct: list[torch.Tensor] = []
    for model in logits:
        if all(agreement(model, other) < 1.0 for other in distinct):
            distinct.append(model)
    pairs = [agreement(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]
    return sum(pairs) / len(pairs) if pairs else None


def portfolio_disagreement(logits: list[torch.Tensor]) -> str | None:
    """Target logits of every model of the portfolio: do they disagree so much that none is to be
    trusted? Two models' agreement rate tracks their accuracy (Jiang et al., ICLR 2022)."""
    share = mean_pairwise_agreement(logits)
    if share is None or share >= MIN_PORTFOLIO_AGREEMENT:
        return None
    return (
        f"members disagree: the portfolio's models label target images alike only "
        f"{100 * share:.0f}% of the time on average; expect low target accuracy whichever is kept"
    )


def source_accuracy_collapse(adapted: float, source: float) -> str | None:
    """Source-validation accuracy of the adapted and the source model (methods reading source)."""
    if adapted >= SOURCE_KEPT * source:
        return None
    return (
        f"source accuracy collapsed: {adapted:.2f} on source validation images, against "
        f"{source:.2f} before adapting, although the method trains on source labels"
    )


def prefers_source(selector: str, fell_back: bool) -> str:
    """The label-free selector scored the unadapted model above every adapted one."""
    said = (
        f"the label-free selector ({selector}) prefers the unadapted source model to every "
        "adapted one"
    )
    if fell_back:
        return f"{said}; kept the source model. Adaptation probably does not help on this target"
    # adapt.fallback_to_source is off by default: on hard shifts this signal is often wrong
    return (
        f"{said}; kept the adapted model anyway. That signal is often wrong on hard shifts: "
        "compare the model with source-only in reports/evaluate.md before relying on it"
    )


@dataclass
class RunSignals:
    """What the checks read about one adaptation run (all on the same target images)."""

    adapted_target: torch.Tensor  # logits of the kept model
    source_target: torch.Tensor  # logits of the unadapted source model
    consensus: torch.Tensor | None  # probabilities of the other models (None: no others)
    consensus_of: str  # who the other models are, in words
    portfolio: list[torch.Tensor] | None  # logits of every model of the portfolio (auto only)
    source_accuracies: tuple[float, float] | None  # (kept, source model) on source validation
    # images, for a kept model whose method trains on source labels; else None
    selector: str  # the validator or rule that chose
    prefers_source: bool  # it scored the source model above every adapted one
    fell_back: bool  # and the source model was kept


def run_warnings(signals: RunSignals) -> list[str]:
    """Every label-free warning for one run, in a fixed order; empty when nothing is suspicious."""
    s = signals
    found = [collapsed_predictions(s.adapted_target, s.source_target)]
    if s.consensus is not None:
        found.append(disagreeing_members(s.adapted_target, s.consensus, s.consensus_of))
    if s.portfolio is not None:
        found.append(portfolio_disagreement(s.portfolio))
    if s.source_accuracies is not None:
        found.append(source_accuracy_collapse(*s.source_accuracies))
    if s.prefers_source:
        found.append(prefers_source(s.selector, s.fell_back))
    return [w for w in found if w]


def accuracy(outputs: Outputs) -> float:
    """Top-1 accuracy of labeled outputs."""
    return float((outputs.logits.argmax(1) == outputs.labels).float().mean())


def method_warnings(
    kept: Classifier,
    source: Classifier,
    pools: tuple[ImagePool | None, ImagePool],
    device: torch.device,
    max_samples: int,
    selector: tuple[str, bool, bool],
) -> list[str]:
    """Warnings of a one-method run: `kept` and the `source` model, the (source validation,
    target) pools (no source pool for source-free methods), and the selector's (name, prefers
    the source model, fell back to it). With one method there are no other models to
    compare with: `adapt.method: auto` checks more."""
    source_val, target = pools

    def on(model: Classifier, pool: ImagePool) -> Outputs:
        return predict(model.to(device), pool, device, BATCH, max_samples)

    accuracies = None
    if source_val is not None:
        accuracies = (accuracy(on(kept, source_val)), accuracy(on(source, source_val)))
    name, prefers, fell_back = selector
    return run_warnings(
        RunSignals(
            adapted_target=on(kept, target).logits,
            source_target=on(source, target).logits,
            consensus=None,
            consensus_of="",
            portfolio=None,
            source_accuracies=accuracies,
            selector=name,
            prefers_source=prefers,
            fell_back=fell_back,
        )
    )


def adaptation_warnings(result: Adaptation, params: Params) -> list[str]:
    """Warnings of the adapt stage's one-method run (on the CPU, from its cached pools)."""
    from adaptflow.core import paths
    from adaptflow.data.pools import load_pool

    reads_source = result.fit.history[0]["scores"].get("source_accuracy") is not None
    source_val = None
    if reads_source:
        source_val = load_pool(paths.SOURCE_VAL, "source validation", labeled=True)
    target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    return method_warnings(
        result.adapted_model,
        result.source_model,
        (source_val, target),
        torch.device("cpu"),
        params.selection.max_samples,
        (result.validator, result.negative_transfer_suspected, result.fell_back_to_source),
    )
