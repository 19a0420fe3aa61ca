"""The CUDA paths of training, through the stages' own entry points (adapt, train_source_model):
bf16 autocast, channels_last, the three loaders, resume, torch.compile, SHOT and AdaBN.

Each test reports its per-epoch img/s and peak GPU memory (see conftest.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from adaptflow.adapt.one_method import Adaptation
from adaptflow.training.validators import Selector

from .conftest import deterministic_algorithms, epoch_records
from .toy import (
    Scale,
    adapt_in,
    calls_counted,
    make_params,
    pretrain_in,
    recorded_convolutions,
    relative_difference,
    write_project,
)

pytestmark = pytest.mark.cuda
LOADERS = ["device", "main", "workers"]
# Runs fed the same batches, with deterministic kernels, may differ only by kernels torch has
# no deterministic version of (reported by `deterministic_algorithms`); bf16 rounding of such
# differences stays far below this over a few steps.
SAME_RUN_TOLERANCE = 1e-3
# compiled kernels fuse and round differently from eager ones, also in float32 accumulators;
# epoch-mean losses of a few steps move by a few bf16 steps (0.0039 near 0.75)
COMPILE_TOLERANCE = 2e-2
COMPILE_LOSS_TOLERANCE = 5e-2
# AdaBN on the GPU vs the CPU: TF32 convolutions on the GPU, float32 on the CPU
ADABN_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, scale: Scale) -> Path:
    return write_project(tmp_path_factory.mktemp("cuda-project"), scale)


def assert_finite_losses(history: list[dict]) -> None:
    for record in history[1:]:
        assert record["losses"], f"epoch {record['epoch']} logged no loss"
        for name, value in record["losses"].items():
            assert math.isfinite(value), f"epoch {record['epoch']}: {name} = {value}"


def assert_speed_and_memory(history: list[dict], device: torch.device) -> None:
    """Every trained epoch reports img/s, and peak GPU memory when on a GPU (None on a CPU)."""
    for record in history[1:]:
        assert record["images_per_second"] > 0
        if device.type == "cuda":
            assert record["peak_memory_mb"] > 0
        else:
            assert record["peak_memory_mb"] is None


@pytest.mark.parametrize("loader", LOADERS)
def test_one_dann_step_runs_in_bf16_on_channels_last_batches(
    project, scale, device, loader, report
):
    params = make_params(scale, "adapt", method="dann", epochs=1, steps_per_epoch=1, loader=loader)
    with recorded_convolutions() as convolutions:
        result = adapt_in(project, params, device)
    assert convolutions, "no convolution ran in training mode"
    assert {dtype for dtype, _ in convolutions} == {torch.bfloat16}
    assert all(channels_last for _, channels_last in convolutions)
    assert_finite_losses(result.fit.history)
    assert relative_difference(result.snapshots[1], result.source_model) > 0
    report(loader=loader, epochs=epoch_records(result.fit.history))


@pytest.fixture(scope="module")
def one_epoch(project, scale, device) -> Callable[[str], tuple[Adaptation, list[str]]]:
    """One full DANN epoch with a loader under deterministic kernels, run once per module:
    the result and the ops that had no deterministic kernel."""
    runs: dict[str, tuple[Adaptation, list[str]]] = {}

    def run(loader: str) -> tuple[Adaptation, list[str]]:
        if loader not in runs:
            params = make_params(scale, "adapt", method="dann", epochs=1, loader=loader)
            with deterministic_algorithms() as missing:
                runs[loader] = adapt_in(project, params, device), missing
        return runs[loader]

    return run


@pytest.mark.parametrize("loader", LOADERS)
def test_one_dann_epoch_per_loader_reports_speed_and_memory(one_epoch, device, loader, report):
    result, missing = one_epoch(loader)
    history = result.fit.history
    assert [record["epoch"] for record in history] == [0, 1]
    assert_finite_losses(history)
    assert_speed_and_memory(history, device)
    report(
        loader=loader,
        epochs=epoch_records(history),
        nondeterministic_ops=missing,
    )


def test_the_three_loaders_train_the_same_model(one_epoch, report):
    reference, _ = one_epoch("device")
    for loader in ("main", "workers"):
        result, _ = one_epoch(loader)
        difference = relative_difference(result.snapshots[1], reference.snapshots[1])
        report(loader=loader, relative_difference_to_device_loader=difference)
        assert difference <= SAME_RUN_TOLERANCE, loader
        for name, value in reference.fit.history[1]["losses"].items():
            other = result.fit.history[1]["losses"][name]
            assert other == pytest.approx(value, rel=SAME_RUN_TOLERANCE, abs=1e-6), (loader, name)


def _best_epochs(result: Adaptation) -> dict[str, int]:
    return {validator: int(best["epoch"]) for validator, best in result.fit.best.items()}


class Interrupted(Exception):
    """Stands for a killed run."""


def test_a_resumed_run_ends_like_an_uninterrupted_one(tmp_path, scale, device, monkeypatch, report):
    params = make_params(scale, "adapt", method="dann", epochs=3, steps_per_epoch=3)
    with deterministic_algorithms() as missing:
        uninterrupted = adapt_in(write_project(tmp_path / "a", scale), params, device)

        project = write_project(tmp_path / "b", scale)
        real_scores, calls = Selector.scores, [0]

        def scores_until_epoch_two(selector, model):
            calls[0] += 1
            if calls[0] == 3:  # epochs 0 and 1 scored and saved; die at the end of epoch 2
                raise Interrupted
            return real_scores(selector, model)

        monkeypatch.setattr(Selector, "scores", scores_until_epoch_two)
        with pytest.raises(Interrupted):
            adapt_in(project, params, device)
        scored = [0]
        monkeypatch.setattr(Selector, "scores", calls_counted(real_scores, scored))
        resumed = adapt_in(project, params, device)

    assert scored[0] == 2, "the resumed run did not start after epoch 1"
    assert _best_epochs(resumed) == _best_epochs(uninterrupted)
    differences = {
        epoch: relative_difference(model, uninterrupted.snapshots[epoch])
        for epoch, model in resumed.snapshots.items()
    }
    report(relative_difference_by_epoch=differences, nondeterministic_ops=missing)
    assert resumed.snapshots.keys() == uninterrupted.snapshots.keys()
    assert max(differences.values()) <= SAME_RUN_TOLERANCE


@pytest.mark.parametrize("stage", ["pretrain", "adapt"])
def test_compiled_training_matches_eager_training(
    project, scale, device, stage, compile_allowed, report
):
    """compile: true for source-only training (pretrain) and for DANN (adapt)."""

    def train(compile_model: bool):
        settings = {"epochs": 1, "steps_per_epoch": 4, "compile": compile_model}
        if stage == "adapt":
            result = adapt_in(project, make_params(scale, stage, method="dann", **settings), device)
            return result.snapshots[1], result.fit.history
        result = pretrain_in(project, make_params(scale, stage, **settings), device)
        return result.model, result.fit.history

    eager, eager_history = train(False)
    # dynamo reuses the code it compiled for another instance of the same backbone at the same
    # shapes (the pretrain case before this one): forget it, so this stage must compile its own
    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    compiled, compiled_history = train(True)
    assert counters["stats"]["unique_graphs"] > graphs, "torch.compile compiled nothing"
    difference = relative_difference(compiled, eager)
    report(stage=stage, relative_difference_to_eager=difference)
    assert difference <= COMPILE_TOLERANCE
    for name, value in eager_history[1]["losses"].items():
        assert compiled_history[1]["losses"][name] == pytest.approx(
            value, rel=COMPILE_LOSS_TOLERANCE
        )


def test_shot_adapts_the_features_and_keeps_the_source_head(project, scale, device, report):
    params = make_params(scale, "adapt", method="shot", epochs=2, steps_per_epoch=3)
    result = adapt_in(project, params, device)
    assert_finite_losses(result.fit.history)
    assert set(result.fit.history[1]["losses"]) >= {"information_maximization", "pseudo_label_ce"}
    adapted, source = result.adapted_model, result.source_model
    assert torch.equal(adapted.head.weight, source.head.weight)
    assert torch.equal(adapted.head.bias, source.head.bias)
    assert relative_difference(adapted.backbone, source.backbone) > 0
    report(epochs=epoch_records(result.fit.history))


def test_adabn_on_the_device_matches_adabn_on_the_cpu(project, scale, device, report):
    params = make_params(scale, "adapt", method="adabn")
    on_device = adapt_in(project, params, device).adapted_model
    on_cpu = adapt_in(project, params, torch.device("cpu"))
    source = on_cpu.source_model
    weights = {name for name, _ in source.named_parameters()}
    for name, value in on_device.state_dict().items():
        if name in weights:  # AdaBN changes BatchNorm statistics only
            assert torch.equal(value, source.state_dict()[name]), name
    difference = relative_difference(on_device, on_cpu.adapted_model)
    report(relative_difference_to_cpu=difference)
    assert difference <= ADABN_TOLERANCE
    assert relative_difference(on_cpu.adapted_model, source) > ADABN_TOLERANCE
