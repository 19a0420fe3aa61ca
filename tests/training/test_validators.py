"""Label-free validators behave as their definitions say, on hand-made predictions."""

from __future__ import annotations

import math

import pytest
import torch

from adaptflow.core.errors import AdaptflowError
from adaptflow.models.outputs import Outputs
from adaptflow.training.validators import (
    Predictions,
    check_validator,
    dev,
    entropy,
    info_max,
    snd,
    source_accuracy,
    usable_validators,
)


def target(logits) -> Predictions:
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return Predictions(source=None, target=Outputs(logits, logits, None))


def test_entropy_prefers_confident_predictions():
    confident, unsure = target([[10.0, 0, 0]] * 4), target([[0.0, 0, 0]] * 4)
    assert entropy(confident) > entropy(unsure)
    assert entropy(unsure) == pytest.approx(-math.log(3), abs=1e-6)


def test_info_max_prefers_confident_and_diverse_predictions():
    diverse = target([[10.0, 0], [0, 10.0]] * 4)
    collapsed = target([[10.0, 0]] * 8)  # confident but all one class
    assert info_max(diverse) == pytest.approx(math.log(2), abs=1e-3)
    assert info_max(collapsed) == pytest.approx(0.0, abs=1e-3)


def test_snd_is_higher_when_neighbourhoods_are_dense():
    generator = torch.Generator().manual_seed(0)
    clustered = torch.cat(
        [
            torch.randn(20, 2, generator=generator) * 0.1 + torch.tensor(c)
            for c in ([8.0, 0.0], [0.0, 8.0])
        ]
    )
    scattered = torch.randn(40, 2, generator=generator) * 3
    assert snd(target(clustered)) > snd(target(scattered))


def test_source_accuracy_counts_correct_predictions():
    source = Outputs(
        torch.tensor([[2.0, 0], [0, 2.0], [2.0, 0]]), torch.zeros(3, 2), torch.tensor([0, 1, 1])
    )
    assert source_accuracy(Predictions(source, None)) == pytest.approx(2 / 3)


def test_dev_ranks_a_low_loss_model_above_a_high_loss_one():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 4, generator=generator)
    labels = (features[:, 0] > 0).long()
    good_logits = torch.stack([-features[:, 0], features[:, 0]], 1) * 5
    bad_logits = -good_logits
    tgt = Outputs(torch.zeros(100, 2), torch.randn(100, 4, generator=generator) + 0.5, None)
    good = dev(Predictions(Outputs(good_logits, features, labels), tgt))
    bad = dev(Predictions(Outputs(bad_logits, features, labels), tgt))
    assert good > bad


def test_source_free_methods_cannot_use_validators_that_need_source_data():
    assert usable_validators(has_source=False, has_target=True) == ["entropy", "info_max", "snd"]
    with pytest.raises(AdaptflowError, match="dev needs source data"):
        check_validator("dev", has_source=False, method="shot")
    with pytest.raises(AdaptflowError, match="unknown validator 'accuracy'"):
        check_validator("accuracy", has_source=True, method="dann")
