"""Transferability estimators against closed-form cases and independent evidence maximisers:
LogME against the marginal likelihood of its Bayesian linear model, y ~ N(0, F F^T / alpha +
I / beta), maximised numerically here and worked by hand on a tiny problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from adaptflow.source_model.transferability import (
    hscore,
    leep,
    logme,
    logme_evidence,
    nce,
    proxy_a_distance,
)


@pytest.fixture
def labels() -> np.ndarray:
    return np.repeat(np.arange(4), 25)  # 4 balanced classes, n = 100


def entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / len(labels)
    return float(-np.sum(p * np.log(p)))


def marginal_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Per-sample log p(y | F, alpha, beta), w integrated out: y ~ N(0, F F^T/alpha + I/beta)."""
    covariance = features @ features.T / alpha + np.eye(len(y)) / beta
    return float(multivariate_normal(mean=np.zeros(len(y)), cov=covariance).logpdf(y)) / len(y)


def maximised(evidence, features: np.ndarray, labels: np.ndarray) -> float:
    """LogME by its definition: `evidence(F, y, alpha, beta)` maximised over alpha and beta by
    a generic optimiser for each one-vs-rest class, averaged over the classes."""
    best = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(float)
        found = minimize(
            lambda v, y=y: -evidence(features, y, math.exp(v[0]), math.exp(v[1])),
            x0=[0.0, 0.0],
            method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000},
        )
        best.append(-found.fun)
    return float(np.mean(best))


def test_logme_reaches_the_maximum_of_the_evidence_found_by_a_generic_optimiser():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 6))
    labels = (features[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int)
    expected = maximised(logme_evidence, features, labels)
    assert logme(features, labels) == pytest.approx(expected, abs=1e-6)


def test_logme_of_a_one_feature_problem_worked_by_hand():
    # F = (1, 1, -1, -1), classes (0, 0, 1, 1). y's covariance has eigenvalue
    # l1 = |F|^2/alpha + 1/beta along F and l0 = 1/beta on the three directions orthogonal to
    # it. Each one-vs-rest y puts (y.F/|F|)^2 = 1 along F and 1 in the rest, so the evidence
    # -2 log 2pi - (log l1 + 3 log l0)/2 - (1/l1 + 1/l0)/2 peaks at l1 = 1, l0 = 1/3
    # (alpha = 6, beta = 3): -2 log 2pi + 3/2 log 3 - 2, or per sample:
    expected = -math.log(2 * math.pi) / 2 + 3 / 8 * math.log(3) - 1 / 2
    features, labels = np.array([[1.0], [1.0], [-1.0], [-1.0]]), np.array([0, 0, 1, 1])
    assert logme(features, labels) == pytest.approx(expected, abs=1e-9)
    for y in ([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]):
        assert marginal_evidence(features, np.array(y), 6.0, 3.0) == pytest.approx(expected)


@pytest.mark.parametrize(("count", "dim", "seed"), [(40, 3, 0), (25, 30, 1)])
def test_logme_equals_the_marginal_likelihood_maximised_numerically(count, dim, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    features = rng.normal(size=(count, dim)) + np.pad(np.eye(3)[labels], ((0, 0), (0, dim - 3)))
    expected = maximised(marginal_evidence, features, labels)
    assert logme(features, labels) == pytest.approx(expected, abs=1e-6)


def test_logme_handles_more_dimensions_than_samples_and_prefers_informative_features(labels):
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(100, 150))
    informative = noise.copy()
    informative[:, :4] += 3 * np.eye(4)[labels]
    assert np.isfinite(logme(noise, labels))
    assert logme(informative, labels) > logme(noise, labels) + 0.1


def test_leep_is_zero_for_a_deterministic_source_to_target_mapping(labels):
    source = np.eye(8)[labels * 2 + np.arange(100) % 2]  # two source labels per target label
    assert leep(source, labels) == pytest.approx(0.0, abs=1e-9)


def test_leep_of_an_uninformative_source_model_is_minus_the_label_entropy(labels):
    uniform = np.full((100, 10), 0.1)
    skewed = np.concatenate([labels, np.zeros(20, dtype=int)])  # unbalanced classes too
    assert leep(uniform, labels) == pytest.approx(-math.log(4))
    assert leep(np.full((120, 10), 0.1), skewed) == pytest.approx(-entropy(skewed))


def test_nce_is_minus_the_conditional_entropy(labels):
    assert nce(labels + 3, labels) == pytest.approx(0.0)  # Z determines Y
    assert nce(np.zeros(100, dtype=int), labels) == pytest.approx(-math.log(4))  # Z constant
    # Z = Y except half of class 0 predicted as class 1: H(Y|Z=1) for the 37.5 : 12.5 split
    z = labels.copy()
    z[:12] = 1
    mixed = 37 / 100 * -(12 / 37 * math.log(12 / 37) + 25 / 37 * math.log(25 / 37))
    assert nce(z, labels) == pytest.approx(-mixed)


def test_hscore_counts_the_separable_directions(labels):
    onehot = np.eye(4)[labels]  # features that are the labels: rank of between-class cov = 3
    assert hscore(onehot, labels, shrink=False) == pytest.approx(3.0)
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(4000, 5))
    assert hscore(noise, np.repeat(np.arange(4), 1000), shrink=False) < 0.01


def test_shrinkage_keeps_hscore_meaningful_with_more_dimensions_than_samples(labels):
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(100, 300))
    informative = noise + 2 * np.pad(np.eye(4)[labels], ((0, 0), (0, 296)))
    # plain: both saturate at classes - 1, so it cannot tell them apart
    assert hscore(noise, labels, shrink=False) == pytest.approx(3.0)
    assert hscore(informative, labels, shrink=False) == pytest.approx(3.0)
    assert hscore(informative, labels) > hscore(noise, labels) + 1.0


def test_proxy_a_distance_is_zero_for_one_domain_and_two_for_separable_domains():
    rng = np.random.default_rng(3)
    same = rng.normal(size=(400, 8))
    assert proxy_a_distance(same[:200], same[200:]) < 0.3
    assert proxy_a_distance(same[:200], same[200:] + 10.0) == pytest.approx(2.0)


def test_features_without_signal_score_finite_and_below_informative_ones(labels):
    blank = np.zeros((100, 16))
    informative = np.pad(np.eye(4)[labels], ((0, 0), (0, 12)))
    assert np.isfinite(logme(blank, labels)) and np.isfinite(hscore(blank, labels))
    assert logme(informative, labels) > logme(blank, labels)
    assert proxy_a_distance(blank, blank) == pytest.approx(0.0)


def test_estimators_reject_mismatched_shapes(labels):
    with pytest.raises(ValueError, match="need \\(n, d\\) features"):
        logme(np.zeros((10, 3)), labels)
