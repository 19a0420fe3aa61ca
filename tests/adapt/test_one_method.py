"""The adapt stage's guarantees: source-free methods read no source data; the negative-transfer
guard keeps the source model when the validator prefers it; validators fit the method."""

from __future__ import annotations

import shutil

import pytest
import torch

from adaptflow.adapt.diagnostics import adaptation_warnings
from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.methods.base import METHODS, Method, StepOutput, method_class, register
from adaptflow.models.classifier import load_classifier
from tests.helpers.toy import adapt_in, prepare_project, small_params


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    prepare_project(root, scramble=False)
    return root


@pytest.mark.parametrize("method", ["shot", "tent", "adabn"])
def test_source_free_methods_run_without_any_source_data(project, tmp_path, method):
    assert not method_class(method).uses_source
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    for name in (paths.SOURCE_TRAIN, paths.SOURCE_VAL, paths.SOURCE_TEST):
        (copy / name).unlink()
    shutil.rmtree(copy / "src")  # the raw source images too
    result = adapt_in(copy, small_params(method))
    assert "source_accuracy" not in result.fit.history[0]["scores"]


def test_a_source_free_method_refuses_a_validator_that_needs_source_data(project):
    with pytest.raises(AdaptflowError, match="dev needs source data.*'shot' never reads"):
        adapt_in(project, small_params("shot", validator="dev"))


@pytest.fixture
def sabotage():
    @register
    class Sabotage(Method):
        """Shrinks every logit to zero: uniform, maximally unsure target predictions."""

        name = "sabotage_for_test"

        def step(self, source, target):
            return StepOutput({"logit_norm": self.model(target.images).pow(2).mean()})

    yield Sabotage.name
    del METHODS[Sabotage.name]


@pytest.mark.parametrize("fallback", [True, False, None])
def test_negative_transfer_is_flagged_and_the_source_model_kept_on_request(
    project, sabotage, fallback, monkeypatch
):
    """None: the default, which keeps the adapted model (the flag and a warning still say it)."""
    params = small_params(sabotage, validator="entropy")
    changes = {"lr": 0.5} if fallback is None else {"fallback_to_source": fallback, "lr": 0.5}
    params = params.model_copy(update={"adapt": params.adapt.model_copy(update=changes)})
    result = adapt_in(project, params)
    fallback = bool(fallback)
    assert result.negative_transfer_suspected
    assert result.fell_back_to_source is fallback
    source, _ = load_classifier(project / paths.SOURCE_MODEL)
    same = all(
        torch.equal(source.state_dict()[k], v) for k, v in result.adapted_model.state_dict().items()
    )
    assert same is fallback
    assert result.selected_epoch == (0 if fallback else result.fit.best["entropy"]["epoch"])
    monkeypatch.chdir(project)
    [warning] = [w for w in adaptation_warnings(result, params) if "prefers the unadapted" in w]
    kept = "kept the source model" if fallback else "kept the adapted model anyway"
    assert kept in warning
