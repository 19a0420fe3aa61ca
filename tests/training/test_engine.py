"""The training loop: it learns, it is deterministic, it resumes exactly, it stops on NaN."""

from __future__ import annotations

import logging

import pytest
import torch

from adaptflow.core.devices import seed_everything
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import AugmentParams, TrainingParams
from adaptflow.methods.base import Method, StepOutput
from adaptflow.methods.finetune import Finetune, FinetuneOptions
from adaptflow.models.classifier import Classifier
from adaptflow.training.checkpoints import CheckpointStore
from adaptflow.training.engine import TrainingData, fit
from adaptflow.training.validators import Selector
from tests.helpers.toy import bars_pool, toy_spec

CPU = torch.device("cpu")
PARAMS = TrainingParams(
    epochs=3,
    steps_per_epoch=6,
    batch_size=16,
    lr=0.05,
    augment=AugmentParams(translate=0.05, rotate=5, scale=0.05),
)


def make_method(seed: int = 0, cls=Finetune) -> Method:
    seed_everything(seed)
    return cls(Classifier(toy_spec()), PARAMS, FinetuneOptions())


def train(
    tmp_path,
    method,
    params=PARAMS,
    store_name="store",
    selector=None,
    target=None,
    until_epoch=None,
):
    source, val = bars_pool("source", 96), bars_pool("val", 32, seed=1)
    selector = selector or Selector(["source_accuracy"], val, None, CPU, 64, 100)
    store = CheckpointStore(tmp_path / store_name, fingerprint="f")
    return fit(
        method,
        TrainingData(source=source, target=target),
        params,
        stage="test",
        seed=0,
        device=CPU,
        selector=selector,
        store=store,
        until_epoch=until_epoch,
    )


def weights(method: Method) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in method.state_dict().items()}


def test_the_loop_learns_a_learnable_problem(tmp_path):
    result = train(tmp_path, make_method())
    assert result.history[0]["scores"]["source_accuracy"] < 0.8
    assert result.best["source_accuracy"]["score"] > 0.95
    assert set(result.snapshots) == {result.best["source_accuracy"]["epoch"]}
    assert result.snapshots[result.best["source_accuracy"]["epoch"]].is_file()


def test_same_seed_same_weights(tmp_path):
    first, second = make_method(), make_method()
    train(tmp_path, first, store_name="a")
    train(tmp_path, second, store_name="b")
    for name, value in weights(first).items():
        assert torch.equal(value, weights(second)[name]), name


# steps per epoch, grad_accum_steps: 5 steps in groups of 2 leave a one-step group per epoch
@pytest.mark.parametrize(
    ("steps", "accum"), [(6, 1), (5, 2)], ids=["plain", "accumulation-with-a-leftover-step"]
)
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, steps, accum):
    params = PARAMS.model_copy(update={"steps_per_epoch": steps, "grad_accum_steps": accum})
    uninterrupted = make_method()
    train(tmp_path, uninterrupted, params=params, store_name="full")

    class Interrupt(Exception):
        pass

    val = bars_pool("val", 32, seed=1)
    selector = Selector(["source_accuracy"], val, None, CPU, 64, 100)
    calls = {"n": 0}
    real_scores = selector.scores

    def scores_then_die(model):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 0 and 1 scored; die at the end of epoch 2, before saving it
            raise Interrupt
        return real_scores(model)

    selector.scores = scores_then_die
    with pytest.raises(Interrupt):
        train(tmp_path, make_method(), params=params, store_name="resumed", selector=selector)
    assert CheckpointStore(tmp_path / "resumed", "f").load()["epoch"] == 1

    resumed = make_method(seed=123)  # different init: everything must come from the checkpoint
    train(tmp_path, resumed, params=params, store_name="resumed")
    for name, value in weights(uninterrupted).items():
        assert torch.equal(value, weights(resumed)[name]), name


def test_a_run_stopped_at_a_rung_goes_on_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """A budgeted search trains a member to a rung, scores it, and later continues it."""
    uninterrupted = make_method()
    train(tmp_path, uninterrupted, store_name="full")

    rung = train(tmp_path, make_method(), store_name="rungs", until_epoch=1)
    assert [r["epoch"] for r in rung.history] == [0, 1] and rung.epochs == PARAMS.epochs
    continued = make_method(seed=123)  # different init: everything comes from the rung
    final = train(tmp_path, continued, store_name="rungs")
    assert [r["epoch"] for r in final.history] == [0, 1, 2, 3]
    for name, value in weights(uninterrupted).items():
        assert torch.equal(value, weights(continued)[name]), name


def test_every_step_of_an_epoch_reaches_an_update_with_accumulation(tmp_path):
    params = PARAMS.model_copy(update={"epochs": 1, "steps_per_epoch": 5, "grad_accum_steps": 2})
    method = make_method()
    train(tmp_path, method, params=params)
    assert all(p.grad is None for p in method.parameters())  # nothing left to leak onwards


def test_state_of_other_inputs_is_discarded(tmp_path):
    train(tmp_path, make_method(), store_name="s")
    assert CheckpointStore(tmp_path / "s", "f").load() is not None
    assert CheckpointStore(tmp_path / "s", "other").load() is None
    assert not (tmp_path / "s").exists()


def test_a_store_with_a_truncated_snapshot_is_set_aside_and_training_restarts(tmp_path, caplog):
    train(tmp_path, make_method(), store_name="s")
    (snapshot,) = (tmp_path / "s").glob("epoch_*.pt")
    snapshot.write_bytes(truncated := snapshot.read_bytes()[:300])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        assert CheckpointStore(tmp_path / "s", "f").load() is None
    (kept,) = tmp_path.glob("s.unreadable-*")
    assert (kept / snapshot.name).read_bytes() == truncated and (kept / "state.pt").is_file()
    assert any(str(kept) in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tmp_path, make_method(), store_name="s")
    assert not any("resuming" in record.getMessage() for record in caplog.records)
    assert CheckpointStore(tmp_path / "s", "f").load()["epoch"] == PARAMS.epochs


class ExplodingMethod(Finetune):
    def step(self, source, target):
        output = super().step(source, target)
        if self.progress > 0.1:
            output.losses["source_ce"] = output.losses["source_ce"] * float("nan")
        return output


def test_a_nan_loss_stops_training_with_epoch_step_and_last_finite_loss(tmp_path):
    with pytest.raises(
        AdaptflowError,
        match=r"loss became nan at epoch 1, step 3 \(last finite "
        r"loss \d\.\d+\); lower test.lr",
    ):
        train(tmp_path, make_method(cls=ExplodingMethod))


def test_a_batch_larger_than_the_data_is_refused(tmp_path):
    params = PARAMS.model_copy(update={"batch_size": 500})
    with pytest.raises(AdaptflowError, match="test.batch_size=500 is larger than the source split"):
        train(tmp_path, make_method(), params=params)


class Frozen(Method):
    name = "frozen_for_test"

    def trainable_groups(self):
        return []

    def step(self, source, target):
        return StepOutput({})


def test_a_method_without_trainable_groups_leaves_weights_alone(tmp_path):
    method = make_method(cls=Frozen)
    before = weights(method)
    train(tmp_path, method)
    after = weights(method)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("loader", ["device", "workers"])
def test_every_loader_feeds_the_same_batches_as_the_main_process(tmp_path, loader):
    reference, other = make_method(), make_method()
    train(tmp_path, reference, store_name="main")
    params = PARAMS.model_copy(update={"loader": loader, "workers": 2})
    train(tmp_path, other, params=params, store_name=loader)
    for name, value in weights(reference).items():
        assert torch.equal(value, weights(other)[name]), name


class BatchRecorder(Finetune):
    def step(self, source, target):
        self.seen = [*getattr(self, "seen", []), (len(source.images), len(target.images))]
        return super().step(source, target)


def test_each_domain_takes_its_own_batch_size_and_the_larger_pass_sets_the_steps(tmp_path):
    params = PARAMS.model_copy(update={"epochs": 1, "steps_per_epoch": 0, "target_batch_size": 8})
    method = make_method(cls=BatchRecorder)
    target = bars_pool("target", 80, labeled=False, seed=2)
    train(tmp_path, method, params=params, target=target)
    assert method.seen == [(16, 8)] * 10  # 80 target images / 8 > 96 source images / 16


def test_a_target_batch_larger_than_the_target_data_is_refused(tmp_path):
    params = PARAMS.model_copy(update={"target_batch_size": 100})
    target = bars_pool("target", 80, labeled=False, seed=2)
    with pytest.raises(
        AdaptflowError, match=r"test.target_batch_size=100 is larger than the target"
    ):
        train(tmp_path, make_method(), params=params, target=target)
