"""No target label reaches adaptation: scrambling the target train class folders changes nothing.

For every method, the adapt stage's library runs twice on caches prepared from two target trees
that hold the same images but with the class folders of the train split swapped around. The
adapted weights and the checkpoint selection must be identical.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from adaptflow import paths
from adaptflow.adaptation import adapt, selection_record
from adaptflow.data.cache import CACHE_FILES, UNLABELED, build_split, split_rows
from adaptflow.data.manifest import scan_domains, write_manifest
from adaptflow.devices import seed_everything
from adaptflow.io import save_torch
from adaptflow.methods.base import all_methods
from adaptflow.models import Classifier, ModelSpec, save_classifier
from adaptflow.params import parse_params

from .conftest import SMALL_CACHE as SPEC
from .conftest import write_image

CLASSES = ("a", "b", "c")


def make_tree(root: Path, seed: int) -> None:
    for split, count in (("train", 8), ("test", 3)):
        for k, label in enumerate(CLASSES):
            for i in range(count):
                write_image(root / split / label / f"{i}.png", seed * 1000 + k * 100 + i, size=8)


def prepare_project(project: Path, scramble: bool) -> None:
    make_tree(project / "src", seed=1)
    make_tree(project / "tgt", seed=2)
    if scramble:  # a <- b <- c <- a: every target train label is now wrong
        train = project / "tgt" / "train"
        shutil.move(train / "a", train / "tmp")
        shutil.move(train / "c", train / "a")
        shutil.move(train / "b", train / "c")
        shutil.move(train / "tmp", train / "b")
    manifest = scan_domains(project / "src", project / "tgt", 10**7).manifest()
    write_manifest(manifest, project / paths.MANIFEST)  # present, so reading it would show
    for name, rows in split_rows(manifest, SPEC).items():
        payload = build_split(rows, list(CLASSES), SPEC, labeled=name not in UNLABELED)
        save_torch(project / CACHE_FILES[name], payload)
    seed_everything(0)
    spec = ModelSpec(
        backbone="small_cnn",
        classes=list(CLASSES),
        channels=1,
        image_size=8,
        bottleneck_dim=8,
        mean=[0.5],
        std=[0.3],
    )
    save_classifier(project / paths.SOURCE_MODEL, Classifier(spec))


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> tuple[Path, Path]:
    plain, scrambled = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("scrambled")
    prepare_project(plain, scramble=False)
    prepare_project(scrambled, scramble=True)
    return plain, scrambled


def small_params(method: str, **selection):
    return parse_params(
        {
            "data": {"source": "src", "target": "tgt", "image_size": 8},
            "adapt": {"method": method, "epochs": 2, "steps_per_epoch": 3, "batch_size": 8},
            "selection": {"validator": "info_max", "max_samples": 64, **selection},
        }
    )


def adapt_in(project: Path, params):
    here = Path.cwd()
    os.chdir(project)
    try:
        return adapt(params, torch.device("cpu"))
    finally:
        os.chdir(here)


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
