"""Active queries: ask where the likely best models disagree, drawn with recorded probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptflow.adapt.queries import UNIFORM_SHARE, disagreement, draw_round


def test_images_where_the_favourites_disagree_score_highest():
    predicted = torch.tensor(
        [
            [0, 1, 2, 0],  # favourite
            [0, 2, 2, 1],  # runner-up
            [1, 1, 0, 1],  # unlikely to be best
        ]
    )
    score = disagreement(predicted, torch.tensor([0.6, 0.38, 0.02]))
    assert score.argmax() in (1, 3) and score[0] < score[1] and score[2] < score[1]
    assert disagreement(torch.zeros(3, 5, dtype=torch.long), torch.ones(3) / 3).sum() == 0


def test_a_round_draws_distinct_images_and_records_each_draws_probability():
    scores = torch.tensor([0.0] * 90 + [1.0] * 10)
    draws = draw_round(scores, 8, seed=3)
    indices = [d.index for d in draws]
    assert len(set(indices)) == 8
    assert [d.pool for d in draws] == list(range(100, 92, -1))
    for draw in draws:  # every image keeps at least the uniform share; weights stay bounded
        assert UNIFORM_SHARE / draw.pool <= draw.probability + 1e-12
        assert 1 / (draw.pool * draw.probability) <= 1 / UNIFORM_SHARE + 1e-9
    assert sum(i >= 90 for i in indices) >= 4  # most go where the scores are


def test_importance_weights_undo_the_preference_on_average():
    """Importance weighting recovers the pool's mean from preferential draws of 8."""
    rng = np.random.default_rng(0)
    values = torch.from_numpy(rng.random(200)) < 0.7  # what the labels would say
    scores = (~values).double() + 0.1  # the criterion prefers the images where it is False
    estimates, naive = [], []
    for seed in range(200):
        draws = draw_round(scores, 8, seed)
        weights = torch.tensor([1 / (d.pool * d.probability) for d in draws])
        hits = torch.tensor([float(values[d.index]) for d in draws], dtype=torch.float64)
        estimates.append(float((weights * hits).mean()))
        naive.append(float(hits.mean()))
    truth = float(values.double().mean())
    assert np.mean(estimates) == pytest.approx(truth, abs=0.03)
    assert np.mean(naive) < truth - 0.2  # unweighted, the hard images drag it down
