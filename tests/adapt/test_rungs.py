"""The budgeted portfolio: the rungs a budget pays for, successive halving, and rung states
kept by what trained them (a member goes on from its latest stored rung, never from scratch)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adaptflow.adapt.rungs import (
    Rung,
    member_epochs,
    rung_schedule,
    successive_halving,
    train_to_rung,
)
from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import SOURCE_ONLY, PortfolioParams
from adaptflow.models.classifier import Classifier
from tests.helpers.toy import CPU, prepare_project, project_spec, small_params


def test_the_default_budget_trains_seven_members_two_epochs_two_more_and_one_to_the_end():
    rungs = rung_schedule(2.5, 7, 10)
    assert rungs == [Rung(2, 2), Rung(4, 1), Rung(10, None)]
    assert member_epochs(rungs, 7) == 7 * 2 + 2 * 2 + 6 == 24


def test_full_or_a_budget_of_every_member_trains_every_member_to_the_end():
    assert rung_schedule("full", 7, 10) == rung_schedule(7, 7, 10) == [Rung(10, None)]
    assert rung_schedule(2.5, 2, 10) == [Rung(10, None)]  # a budget of two members: both
    assert rung_schedule(1.5, 2, 10) == [Rung(5, 1), Rung(10, None)]  # two: keep one


def test_a_budget_too_small_for_one_epoch_each_is_refused_naming_the_param():
    with pytest.raises(AdaptflowError, match=r"adapt.portfolio.budget: 1.2 is below .*1.70"):
        rung_schedule(1.2, 7, 10)


@given(
    budget=st.floats(min_value=0.5, max_value=12),
    members=st.integers(min_value=1, max_value=9),
    epochs=st.integers(min_value=1, max_value=40),
)
def test_a_schedule_stays_within_its_budget_and_ends_at_the_last_epoch(budget, members, epochs):
    try:
        rungs = rung_schedule(budget, members, epochs)
    except AdaptflowError:  # one epoch each, two for two, one to the end: at most n + E
        assert budget * epochs < members + epochs
        return
    assert member_epochs(rungs, members) <= budget * epochs + 1e-9
    assert rungs[-1] == Rung(epochs, None)
    assert [r.epoch for r in rungs] == sorted({r.epoch for r in rungs})
    kept = [r.keep for r in rungs[:-1]]
    assert kept == sorted(kept, reverse=True) and all(0 < k < members for k in kept)


def test_halving_trains_on_only_the_survivors_and_records_who_each_rung_dropped():
    model = Classifier(project_spec())
    quality = {"a": 0.1, "b": 0.9, "c": 0.5, SOURCE_ONLY: 0.2}
    advanced = []

    def advance(member, epoch):
        advanced.append((member, epoch))
        return model, {"trained_to_epoch": epoch}

    halving = successive_halving(
        [Rung(1, 2), Rung(2, 1), Rung(5, None)],
        {m: (model, {"trained_to_epoch": 1}) for m in "abc"},
        model,
        lambda models: {name: quality[name] for name in models},
        advance,
    )
    assert advanced == [("b", 2), ("c", 2), ("b", 5)]
    assert halving.survivors == ["b"]
    assert set(halving.models(model)) == {SOURCE_ONLY, "a", "b", "c"}  # what the last scores read
    assert halving.finalists(quality) == {SOURCE_ONLY: 0.2, "b": 0.9}  # what the choice is among
    assert [(r["epoch"], r["dropped"]) for r in halving.rungs] == [(1, ["a"]), (2, ["c"])]
    assert set(halving.rungs[0]["scores"]) == {SOURCE_ONLY, "a", "b", "c"}
    assert {m: r["trained_to_epoch"] for m, (_, r) in halving.members.items()} == {
        "a": 1,
        "b": 5,
        "c": 2,
    }


@pytest.fixture
def project(tmp_path):
    """A fresh project per test: its rung states are the test's own."""
    prepare_project(tmp_path / "project", scramble=False)
    return tmp_path / "project"


def _train(project, monkeypatch, params, epoch):
    monkeypatch.chdir(project)
    return train_to_rung(params, "tent", epoch, CPU)


def _with(params, **adapt):
    return params.model_copy(update={"adapt": params.adapt.model_copy(update=adapt)})


def test_a_member_goes_on_from_its_latest_rung_whatever_the_rule_or_budget(project, monkeypatch):
    params = _with(small_params("tent"), epochs=3)
    first = _train(project, monkeypatch, params, 1)
    assert first.fit.resumed_after == 0 and first.fit.history[-1]["epoch"] == 1
    portfolio = params.adapt.portfolio.model_copy(update={"rule": "mixval", "budget": "full"})
    other_portfolio = _with(params, portfolio=portfolio)
    later = _train(project, monkeypatch, other_portfolio, 3)
    assert later.fit.resumed_after == 1  # the same member settings: epoch 1 is not trained again
    again = _train(project, monkeypatch, params, 3)
    assert again.fit.resumed_after == 3  # both rungs are kept: nothing to train
    earlier = _train(project, monkeypatch, params, 1)
    assert earlier.fit.resumed_after == 1
    keys = list((project / paths.RUNGS / "tent").iterdir())
    assert len(keys) == 1 and sorted(d.name for d in keys[0].iterdir()) == [
        "epoch_0001",
        "epoch_0003",
    ]
    assert all(
        torch.equal(later.adapted_model.state_dict()[k], v)
        for k, v in again.adapted_model.state_dict().items()
    )


def test_a_run_killed_between_rungs_goes_on_after_its_last_epoch(project, monkeypatch):
    params = _with(small_params("tent"), epochs=3, steps_per_epoch=2)
    _train(project, monkeypatch, params, 1)
    _train(project, monkeypatch, params, 2)
    [key] = (project / paths.RUNGS / "tent").iterdir()
    (key / "epoch_0002").rename(key / "work")  # killed on its way to epoch 3, after epoch 2
    assert _train(project, monkeypatch, params, 3).fit.resumed_after == 2
    (key / "epoch_0003").rename(key / "work")  # a state past the epoch asked for is not used
    assert _train(project, monkeypatch, params, 2).fit.resumed_after == 1


def test_changed_member_settings_train_afresh_under_another_key(project, monkeypatch):
    params = _with(small_params("tent"), epochs=3)
    _train(project, monkeypatch, params, 1)
    tent = {"lr_mult": 2.0}
    changed = _train(project, monkeypatch, _with(params, tent=tent), 1)
    assert changed.fit.resumed_after == 0
    assert len(list((project / paths.RUNGS / "tent").iterdir())) == 2


def test_a_member_writes_its_rung_model_and_record_and_an_unknown_member_is_refused(
    project, monkeypatch, tmp_path
):
    from adaptflow.adapt.members import adapt_member, load_member, member_params

    portfolio = PortfolioParams(members=["tent", "shot"], budget="full")
    params = _with(small_params("auto"), portfolio=portfolio, epochs=2)
    monkeypatch.chdir(project)
    adapt_member(params, "tent", 1, tmp_path / "tent", "stages/adapt_member.py", ("tent",))
    model, record = load_member("tent", 1, tmp_path / "tent")
    assert record["member"] == "tent" and record["trained_to_epoch"] == 1
    assert record["resumed_after_epoch"] == 0
    assert set(model.state_dict()) == set(Classifier(project_spec()).state_dict())
    with pytest.raises(AdaptflowError, match="adapt.portfolio.members: 'dann' is not a known"):
        member_params(params, "dann")
    with pytest.raises(AdaptflowError, match="trained to epoch 1, not the rung's 2; rerun"):
        load_member("tent", 2, tmp_path / "tent")  # an output of another budget


def test_changed_library_code_does_not_reuse_the_rungs_it_trained(project, monkeypatch):
    from adaptflow.adapt import rungs

    params = _with(small_params("tent"), epochs=2)
    _train(project, monkeypatch, params, 1)
    assert _train(project, monkeypatch, params, 1).fit.resumed_after == 1
    monkeypatch.setattr(rungs, "_code", lambda: "a fixed bug")
    assert _train(project, monkeypatch, params, 1).fit.resumed_after == 0
