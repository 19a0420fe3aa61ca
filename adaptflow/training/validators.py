"""Label-free validators: scoring checkpoints without a single target label.

Each validator maps a model's predictions on the source validation split (labeled) and on the
unlabeled target training pool to one number, higher is better:

  source_accuracy  accuracy on source validation images (ignores the target entirely)
  entropy          minus the mean prediction entropy on target images
  info_max         information maximisation: entropy of the mean target prediction minus
                   the mean entropy (confident *and* diverse predictions)
  snd              soft neighbourhood density (Saito et al., ICCV 2021)
  dev              minus the deep embedded validation risk (You et al., ICML 2019): source
                   validation loss importance-weighted towards the target, with a control variate
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from adaptflow.core.errors import AdaptflowError
from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier
from adaptflow.models.outputs import Outputs, predict


@dataclass
class Predictions:
    source: Outputs | None  # source validation split
    target: Outputs | None  # unlabeled target pool


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


def source_accuracy(predictions: Predictions) -> float:
    source = predictions.source
    return float((source.logits.argmax(1) == source.labels).float().mean())


def entropy(predictions: Predictions) -> float:
    return -float(_entropy(predictions.target.logits.softmax(1)).mean())


def info_max(predictions: Predictions) -> float:
    probs = predictions.target.logits.softmax(1)
    return float(_entropy(probs.mean(0, keepdim=True))[0] - _entropy(probs).mean())


def snd(predictions: Predictions, temperature: float = 0.05) -> float:
    """Mean entropy of each target sample's soft neighbourhood in normalised softmax space."""
    probs = F.normalize(predictions.target.logits.softmax(1), dim=1)
    similarity = probs @ probs.T
    similarity.fill_diagonal_(-math.inf)
    return float(_entropy((similarity / temperature).softmax(1)).mean())


def _domain_density_ratio(source: np.ndarray, target: np.ndarray, seed: int = 0) -> np.ndarray:
    """p(target|x)/p(source|x) * n_s/n_t per source sample, from a cross-fitted logistic model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([source, target])
    domains = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    ratio = np.ones(len(source))
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    for fit_rows, score_rows in folds.split(features, domains):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        model.fit(features[fit_rows], domains[fit_rows])
        source_rows = score_rows[score_rows < len(source)]
        p_target = model.predict_proba(features[source_rows])[:, 1].clip(1e-4, 1 - 1e-4)
        ratio[source_rows] = p_target / (1 - p_target)
    return ratio * len(source) / len(target)


def dev(predictions: Predictions) -> float:
    """Minus the DEV risk: importance-weighted source validation loss with a control variate."""
    source, target = predictions.source, predictions.target
    weights = _domain_density_ratio(source.features.numpy(), target.features.numpy())
    losses = F.cross_entropy(source.logits, source.labels, reduction="none").numpy()
    weighted = weights * losses
    variance = weights.var(ddof=1)
    eta = -np.cov(weighted, weights)[0, 1] / variance if variance > 0 else 0.0
    return -float(weighted.mean() + eta * weights.mean() - eta)


@dataclass(frozen=True)
class Validator:
    score: Callable[[Predictions], float]
    needs_source: bool
    needs_target: bool


VALIDATORS: dict[str, Validator] = {
    "source_accuracy": Validator(source_accuracy, needs_source=True, needs_target=False),
    "entropy": Validator(entropy, needs_source=False, needs_target=True),
    "info_max": Validator(info_max, needs_source=False, needs_target=True),
    "snd": Validator(snd, needs_source=False, needs_target=True),
    "dev": Validator(dev, needs_source=True, needs_target=True),
}


def usable_validators(has_source: bool, has_target: bool) -> list[str]:
    """Validators computable from the data a stage may read."""
    return [
        name
        for name, validator in VALIDATORS.items()
        if (has_source or not validator.needs_source) and (has_target or not validator.needs_target)
    ]


def check_validator(name: str, has_source: bool, method: str) -> None:
    """Raise a clear error for an unknown validator, or one a source-free method cannot use."""
    if name not in VALIDATORS:
        raise AdaptflowError(
            f"selection.validator: unknown validator {name!r}; choose one of "
            f"{', '.join(VALIDATORS)}"
        )
    if VALIDATORS[name].needs_source and not has_source:
        raise AdaptflowError(
            f"selection.validator: {name} needs source data, which the source-free method "
            f"{method!r} never reads; use one of {', '.join(usable_validators(False, True))}"
        )


class Selector:
    """Scores a model with several validators on fixed samples of source-val and target data."""

    def __init__(
        self,
        names: list[str],
        source_val: ImagePool | None,
        target: ImagePool | None,
        device: torch.device,
        batch_size: int,
        max_samples: int,
        autocast: bool = False,
    ) -> None:
        self.names = names
        self.source_val = source_val
        self.target = target
        self.device = device
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.autocast = autocast

    def _outputs(self, model: Classifier, pool: ImagePool | None) -> Outputs | None:
        if pool is None:
            return None
        return predict(model, pool, self.device, self.batch_size, self.max_samples, self.autocast)

    def scores(self, model: Classifier) -> dict[str, float]:
        """Every validator's score for `model` (higher is better)."""
        predictions = Predictions(
            source=self._outputs(model, self.source_val), target=self._outputs(model, self.target)
        )
        return {name: VALIDATORS[name].score(predictions) for name in self.names}
