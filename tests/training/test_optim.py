"""The optimizer takes a method's groups with their learning rates; the schedules follow their
formulas over the run's updates."""

from __future__ import annotations

import math

import pytest
import torch

from adaptflow.core.params import TrainingParams
from adaptflow.training.optim import build_optimizer, build_schedule

CPU = torch.device("cpu")


def groups() -> list[dict]:
    head, block, frozen = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    frozen.requires_grad_(False)
    return [
        {"params": [head], "lr": 0.1, "name": "head"},
        {"params": [block], "lr": 0.01, "name": "backbone.block3"},
        {"params": [frozen], "lr": 0.001, "name": "backbone.block0"},
    ]


@pytest.mark.parametrize(
    ("kind", "optimizer"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)]
)
def test_each_group_keeps_its_learning_rate_and_frozen_groups_are_left_out(kind, optimizer):
    built = build_optimizer(groups(), TrainingParams(optimizer=kind, lr=0.5), CPU)
    assert isinstance(built, optimizer)
    assert [(g["name"], g["lr"]) for g in built.param_groups] == [
        ("head", 0.1),
        ("backbone.block3", 0.01),
    ]


def test_a_method_that_trains_nothing_gets_no_optimizer_and_no_schedule():
    frozen = [g for g in groups() if g["name"] == "backbone.block0"]
    assert build_optimizer(frozen, TrainingParams(), CPU) is None
    assert build_schedule(None, "cosine", 10) is None


@pytest.mark.parametrize(
    ("kind", "factor"),
    [
        ("constant", lambda step, total: 1.0),
        ("cosine", lambda step, total: 0.5 * (1 + math.cos(math.pi * step / total))),
        ("inv", lambda step, total: (1 + 10 * step / total) ** -0.75),  # DANN's annealing
    ],
)
def test_schedules_scale_every_group_by_their_formula(kind, factor):
    optimizer = build_optimizer(groups(), TrainingParams(lr=0.5), CPU)
    schedule = build_schedule(optimizer, kind, total_updates=8)
    for step in range(1, 9):
        optimizer.step()
        schedule.step()
        for group, base in zip(optimizer.param_groups, (0.1, 0.01), strict=True):
            assert group["lr"] == pytest.approx(base * factor(step, 8))
