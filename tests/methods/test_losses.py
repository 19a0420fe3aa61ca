"""The discrepancy losses CORAL, DAN and MCC (and the mechanism tests judge by) against
references computed another way: naive loops in numpy, numpy's covariance and closed forms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adaptflow.methods.coral import coral_distance
from adaptflow.methods.dan import mk_mmd
from adaptflow.methods.mcc import class_confusion

BANDWIDTHS = [0.25, 1.0, 4.0]


def points(seed: int, count: int, dim: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, dim)) * rng.uniform(0.5, 2.0, size=dim) + shift


def coral_reference(source: np.ndarray, target: np.ndarray) -> float:
    """Deep CORAL as the Transfer-Learning-Library computes it: the mean squared difference of
    the feature means plus that of the (unbiased) covariance matrices, by numpy."""
    means = np.mean((source.mean(0) - target.mean(0)) ** 2)
    covariances = np.mean((np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2)
    return float(means + covariances)


def mmd_reference(source: np.ndarray, target: np.ndarray, bandwidths: list[float]) -> float:
    """Biased MK-MMD² by a loop over every pair, with DAN's bandwidths: multiples of the mean
    squared distance over all pairs of the pooled points."""
    pooled = np.concatenate([source, target])
    count = len(pooled)
    scale = sum(np.sum((a - b) ** 2) for a in pooled for b in pooled) / count**2

    def kernel_mean(xs: np.ndarray, ys: np.ndarray) -> float:
        total = 0.0
        for x in xs:
            for y in ys:
                distance = np.sum((x - y) ** 2)
                total += sum(math.exp(-distance / (2 * b * scale)) for b in bandwidths)
        return total / (len(xs) * len(ys))

    return (
        kernel_mean(source, source) + kernel_mean(target, target) - 2 * kernel_mean(source, target)
    )


def confusion_reference(logits: np.ndarray, temperature: float) -> float:
    """MCC (Jin et al., 2020), equations 1-5, one sample and one class pair at a time."""
    count, classes = logits.shape
    probs = []
    for row in logits / temperature:
        exp = np.exp(row - row.max())
        probs.append(exp / exp.sum())
    probs = np.array(probs)
    certainty = [1 + math.exp(sum(p * math.log(p) for p in row)) for row in probs]  # 1 + e^-H
    weights = [count * w / sum(certainty) for w in certainty]
    confusion = np.zeros((classes, classes))
    for j in range(classes):
        for k in range(classes):
            confusion[j, k] = sum(weights[i] * probs[i, j] * probs[i, k] for i in range(count))
    normalised = confusion / confusion.sum(axis=1, keepdims=True)
    off_diagonal = sum(normalised[j, k] for j in range(classes) for k in range(classes) if j != k)
    return off_diagonal / classes


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


@pytest.mark.parametrize(("count_s", "count_t", "dim"), [(30, 20, 5), (12, 40, 3)])
def test_coral_distance_matches_numpy(count_s, count_t, dim):
    source, target = points(0, count_s, dim), points(1, count_t, dim, shift=0.7)
    distance = coral_distance(tensor(source), tensor(target))
    assert float(distance) == pytest.approx(coral_reference(source, target), rel=1e-10)
    assert float(coral_distance(tensor(source), tensor(source))) == 0.0


def test_coral_distance_of_two_points_per_domain_by_hand():
    # source {0, 2}: mean 1, variance 2; target {1, 1}: mean 1, variance 0 -> (0 + (2-0)^2)
    source, target = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]])
    assert float(coral_distance(source, target)) == pytest.approx(4.0)


@pytest.mark.parametrize("shift", [0.0, 0.5, 3.0])
def test_mk_mmd_matches_a_loop_over_every_pair(shift):
    source, target = points(2, 15, 4), points(3, 10, 4, shift=shift)
    mmd = mk_mmd(tensor(source), tensor(target), BANDWIDTHS)
    assert float(mmd) == pytest.approx(mmd_reference(source, target, BANDWIDTHS), rel=1e-5)


def test_mk_mmd_of_one_point_per_domain_in_closed_form():
    # pooled mean squared distance d²/2, so k(s, t) = sum_b exp(-1/b) whatever the distance,
    # k(x, x) = len(bandwidths): MMD² = 2 sum_b (1 - exp(-1/b))
    source, target = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    expected = 2 * sum(1 - math.exp(-1 / b) for b in BANDWIDTHS)
    assert float(mk_mmd(source, target, BANDWIDTHS)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_class_confusion_matches_the_papers_equations_term_by_term(temperature):
    logits = np.random.default_rng(4).normal(size=(9, 4)) * 3
    confusion = class_confusion(tensor(logits), temperature)
    assert float(confusion) == pytest.approx(confusion_reference(logits, temperature), rel=1e-9)


def test_class_confusion_of_uniform_and_of_certain_predictions_in_closed_form():
    classes = 5
    uniform = torch.zeros(6, classes)  # every class pair equally confused: (classes - 1) / classes
    assert float(class_confusion(uniform, 2.5)) == pytest.approx((classes - 1) / classes)
    certain = torch.eye(classes).repeat(2, 1) * 1000.0  # one-hot predictions: no confusion
    assert float(class_confusion(certain, 2.5)) == pytest.approx(0.0, abs=1e-12)
