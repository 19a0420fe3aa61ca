"""Transferability estimators: how well a candidate model's features suit a labeled task.

Each takes features (or source-label probabilities) of a labeled sample and returns a score
where higher means "expected to transfer better"; the domain gap is the exception, a distance
(lower is better) that needs no labels at all.

- LogME (You et al., ICML 2021): log marginal evidence of a Bayesian linear model on features.
- LEEP (Nguyen et al., ICML 2020): log expected empirical prediction through the source head.
- NCE (Tran et al., ICCV 2019): negative conditional entropy H(Y | source label).
- H-score (Bao et al., ICIP 2019): tr(cov(f)^-1 cov(E[f | y])), covariance shrunk.
- Proxy A-distance (Ben-David et al., 2007): 2 (1 - 2 err) of a linear source-vs-target
  classifier on held-out features.
"""

from __future__ import annotations

import math

import numpy as np

ESTIMATORS = ("logme", "leep", "nce", "hscore")
HIGHER_IS_BETTER = {"logme": True, "leep": True, "nce": True, "hscore": True, "domain_gap": False}


def _check(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if features.ndim != 2 or len(features) != len(labels) or len(features) < 2:
        raise ValueError(
            f"need (n, d) features and n labels, got {features.shape} and {labels.shape}"
        )
    return features, labels


def logme_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """Per-sample log evidence of y = F w + noise, w ~ N(0, 1/alpha), noise ~ N(0, 1/beta).

    Direct formula (solve and log-determinant), used to check the fast fixed-point iteration.
    """
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ target)
    residual = float(np.sum((features @ m - target) ** 2))
    _, logdet = np.linalg.slogdet(a)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * float(m @ m)
        - logdet / 2
    )
    return evidence / n


def logme(features: np.ndarray, labels: np.ndarray, max_iterations: int = 100) -> float:
    """LogME: mean over classes of the maximised evidence of a one-vs-rest linear regression.

    alpha and beta are found by MacKay's fixed-point updates in the SVD basis of F, so each
    class costs O(n d) after one SVD.
    """
    features, labels = _check(features, labels)
    n, d = features.shape
    u, singular, _ = np.linalg.svd(features, full_matrices=False)
    sigma = singular**2  # eigenvalues of F^T F (the rest, up to d, are zero)
    evidences = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(np.float64)
        x2 = (u.T @ y) ** 2
        outside = max(float(y @ y - x2.sum()), 0.0)  # part of y outside F's column space
        alpha, beta = 1.0, 1.0
        for _ in range(max_iterations):
            t = alpha / beta
            gamma = float(np.sum(sigma / (sigma + t)))
            m2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
            residual = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + outside
            # clamped: features without signal (all equal) would drive alpha to 0
            alpha = max(gamma / max(m2, 1e-12), 1e-12)
            beta = max(n - gamma, 1e-12) / max(residual, 1e-12)
            if abs(alpha / beta - t) <= 1e-6 * t:
                break
        logdet = float(np.sum(np.log(alpha + beta * sigma))) + (d - len(sigma)) * math.log(alpha)
        evidence = (
            d / 2 * math.log(alpha)
            + n / 2 * math.log(beta)
            - n / 2 * math.log(2 * math.pi)
            - beta / 2 * residual
            - alpha / 2 * m2
            - logdet / 2
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _joint(source_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Empirical joint P(y, z) of target label y and (soft) source label z."""
    classes = int(labels.max()) + 1
    joint = np.zeros((classes, source_probs.shape[1]))
    np.add.at(joint, labels, source_probs)
    return joint / len(labels)


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: mean log-likelihood of the labels under the empirical predictor P(y|z) theta(x)."""
    source_probs, labels = _check(source_probs, labels)
    joint = _joint(source_probs, labels)
    conditional = joint / np.clip(joint.sum(axis=0, keepdims=True), 1e-12, None)  # P(y | z)
    likelihood = np.sum(source_probs * conditional[labels], axis=1)
    return float(np.mean(np.log(np.clip(likelihood, 1e-12, None))))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE: -H(Y | Z) with Z the source model's hard predictions."""
    source_labels = np.asarray(source_labels).astype(np.int64)
    onehot = np.eye(int(source_labels.max()) + 1)[source_labels]
    joint = _joint(*_check(onehot, labels))
    marginal = joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log((joint / np.clip(marginal, 1e-12, None))[nonzero])))


def hscore(features: np.ndarray, labels: np.ndarray, shrink: bool = True) -> float:
    """H-score: tr(cov(f)^-1 cov(E[f | y])); at most (classes - 1).

    With more feature dimensions than samples the plain covariance is singular and every
    candidate scores classes - 1; `shrink` uses the Ledoit-Wolf shrunk covariance instead
    (the regularised H-score of Ibrahim et al., ICLR 2023).
    """
    features, labels = _check(features, labels)
    centred = features - features.mean(axis=0)
    if shrink:
        from sklearn.covariance import LedoitWolf

        covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    else:
        covariance = centred.T @ centred / len(centred)
    class_means = np.zeros_like(centred)
    for cls in np.unique(labels):
        chosen = labels == cls
        class_means[chosen] = centred[chosen].mean(axis=0)
    between = class_means.T @ class_means / len(centred)
    return float(np.trace(np.linalg.pinv(covariance, rcond=1e-10, hermitian=True) @ between))


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """2 (1 - 2 err): err is the held-out error of a linear source-vs-target classifier.

    0 when the domains are indistinguishable, 2 when they are linearly separable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    size = min(len(source), len(target))  # balanced, so chance error is 0.5
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [np.asarray(d, dtype=np.float64)[rng.permutation(len(d))[:size]] for d in (source, target)]
    )
    y = np.repeat([0, 1], size)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    accuracy = float(np.mean(cross_val_score(classifier, x, y, cv=2)))
    error = min(1.0 - accuracy, 0.5)
    return 2.0 * (1.0 - 2.0 * error)
