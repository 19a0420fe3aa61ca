"""`adaptflow compare` copies into its temporary experiments exactly the data DVC would not
bring."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adaptflow.core.errors import AdaptflowError
from adaptflow.orchestration.compare import data_to_copy, resolve_methods


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    for name in ("plain", "tracked", "made"):
        (tmp_path / name / "train").mkdir(parents=True)
        (tmp_path / name / "train" / "x.png").write_bytes(b"x")
    subprocess.run(["git", "add", "tracked"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  make:\n    cmd: echo\n    outs: [made]\n")
    return tmp_path


def write_params(repo, source, target):
    (repo / "params.yaml").write_text(f"data: {{source: {source}, target: {target}}}\n")


def test_untracked_data_inside_the_project_is_copied(repo):
    write_params(repo, "plain", "tracked")
    assert data_to_copy(repo) == ["plain"]  # git brings "tracked"


def test_data_made_by_a_dvc_stage_is_left_to_dvc(repo):
    write_params(repo, "made", "tracked")
    assert data_to_copy(repo) == []


def test_data_outside_the_project_must_be_absolute(repo, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    write_params(repo, outside, "plain")
    assert data_to_copy(repo) == ["plain"]
    write_params(repo, "../elsewhere", "plain")
    with pytest.raises(AdaptflowError, match="data.source .* relative path outside the project"):
        data_to_copy(repo)


def test_unknown_methods_are_refused_and_none_means_all_but_the_source_model():
    everything = resolve_methods(None)
    assert (
        "shot" in everything and "source_only" not in everything
    )  # always compared, never a member
    with pytest.raises(AdaptflowError, match="unknown method.*nope"):
        resolve_methods(["shot", "nope"])
