"""Train and select: the recipe pretrain and adapt share. Each validator's epoch comes back as
a model; a finished run is resumed, not retrained; in one process `run_training` trains here."""

from __future__ import annotations

import torch

from adaptflow.core.params import TrainingParams, parse_params
from adaptflow.methods.finetune import Finetune, FinetuneOptions
from adaptflow.models.classifier import Classifier
from adaptflow.training.checkpoints import checkpoint_directory
from adaptflow.training.engine import TrainingData
from adaptflow.training.job import TrainingJob, run_training, train_and_select
from tests.helpers.toy import bars_pool, toy_spec

CPU = torch.device("cpu")
TRAINING = TrainingParams(epochs=3, steps_per_epoch=4, batch_size=16, lr=0.05)
PARAMS = parse_params({"data": {"source": "s", "target": "t"}, "device": "cpu"})


def job(inputs: tuple = ()) -> TrainingJob:
    """Supervised training on a toy source, scored by a source and a target validator."""
    return TrainingJob(
        stage="pretrain",
        training=TRAINING,
        build_method=lambda: Finetune(Classifier(toy_spec()), TRAINING, FinetuneOptions()),
        data=TrainingData(
            source=bars_pool("source", 64),
            target=bars_pool("target", 48, labeled=False, seed=2, shift=0.2),
        ),
        validators=["source_accuracy", "entropy"],
        source_val=bars_pool("val", 32, seed=1),
        max_samples=32,
        inputs=inputs,
    )


def test_each_validators_epoch_comes_back_as_a_model_with_its_weights(in_tmp):
    trained = train_and_select(job(), PARAMS, CPU)
    chosen = {int(best["epoch"]) for best in trained.fit.best.values()}
    assert set(trained.snapshots) == chosen
    for epoch, model in trained.snapshots.items():
        saved = torch.load(trained.fit.snapshots[epoch], weights_only=True)
        assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    # the resumable state stays until the stage has written its outputs
    assert (checkpoint_directory("pretrain") / "state.pt").is_file()


def test_a_finished_run_is_resumed_and_other_inputs_start_afresh(in_tmp):
    first = train_and_select(job(), PARAMS, CPU)
    again = train_and_select(job(), PARAMS, CPU)  # the same inputs: every epoch is done already
    assert again.fit.history == first.fit.history  # even the timings: nothing was retrained
    other = train_and_select(job(inputs=("another input",)), PARAMS, CPU)
    assert other.fit.history[1]["seconds"] != first.fit.history[1]["seconds"]
    assert other.fit.history[1]["losses"] == first.fit.history[1]["losses"]  # same seed


def test_in_one_process_run_training_trains_here_and_logs_plots_only_when_asked(in_tmp):
    def train(device: torch.device, live) -> str:
        assert device == CPU
        live.log_metric("loss", 1.0)
        return "trained"

    assert run_training(PARAMS, "pretrain", "stages/pretrain.py", train) == "trained"
    assert (in_tmp / "plots" / "pretrain" / "metrics.json").is_file()
    assert (
        run_training(PARAMS, "adapt", "stages/adapt.py", lambda d, live: live, plots=False) is None
    )
    assert not (in_tmp / "plots" / "adapt").exists()
