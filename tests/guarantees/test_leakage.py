"""No target label reaches adaptation: scrambling the target train class folders changes nothing.

For every method, the adapt stage's library runs twice on caches prepared from two target trees
that hold the same images but with the class folders of the train split swapped around. The
adapted weights and the checkpoint selection must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adaptflow.adapt.one_method import selection_record
from adaptflow.core import paths
from adaptflow.methods.base import all_methods
from tests.helpers.toy import adapt_in, prepare_project, small_params


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> tuple[Path, Path]:
    plain, scrambled = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("scrambled")
    prepare_project(plain, scramble=False)
    prepare_project(scrambled, scramble=True)
    return plain, scrambled


def adapted(project: Path, method: str) -> tuple[dict, dict]:
    result = adapt_in(project, small_params(method))
    return result.adapted_model.state_dict(), selection_record(result, method)


@pytest.mark.parametrize("method", sorted(all_methods()))
def test_scrambled_target_labels_leave_adaptation_unchanged(projects, method):
    plain, scrambled = projects
    assert (plain / paths.TARGET_TRAIN).read_bytes() == (
        scrambled / paths.TARGET_TRAIN
    ).read_bytes()
    weights, selection = adapted(plain, method)
    weights_scrambled, selection_scrambled = adapted(scrambled, method)
    assert selection == selection_scrambled
    assert all(torch.equal(weights[k], weights_scrambled[k]) for k in weights)
