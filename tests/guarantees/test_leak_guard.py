"""No stage before evaluate reads target test data or target labels, seen from the outside.

Each stage runs as its own process under the leak guard (tests/helpers/leak_guard): an audit hook on
every file open and directory listing fails the stage if it reads what its policy forbids
(rank, pretrain and adapt: the target test cache, the manifest, the raw target folders,
evaluation results; prepare: the target test cache and evaluation results). Both with k = 0
and k > 0 labeled target images per class; every adapt run scores every validator each epoch.
The end-to-end test runs its whole `dvc repro` scenario under the same guard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from adaptflow.core import paths
from adaptflow.data.manifest import scan_domains, write_manifest
from adaptflow.models.classifier import Classifier, save_classifier
from adaptflow.training.validators import VALIDATORS
from tests.helpers import ROOT
from tests.helpers.leak_guard import clear_log, forbidden_reads, forbidden_reads_logged, guarded_env
from tests.helpers.toy import make_tree, project_spec

TARGET_ROOT = "tgt"
FORBIDDEN = forbidden_reads(TARGET_ROOT)
GUARDED_STAGES = ("prepare", "rank", "pretrain", "adapt")
# the validator that picks the checkpoint; every one of them scores every epoch regardless
CONFIGURED_VALIDATOR = {0: "info_max", 2: "dev"}


@dataclass
class GuardedRun:
    process: subprocess.CompletedProcess
    forbidden_reads: list[dict]

    def check(self) -> None:
        """The process succeeded and read nothing forbidden."""
        assert self.forbidden_reads == [], self.forbidden_reads
        assert self.process.returncode == 0, self.process.stderr


def run_guarded(project: Path, args: list[str], forbidden: dict[str, list[str]]) -> GuardedRun:
    """Run `python ARGS` in `project` under the guard."""
    folder = project / ".leak_guard"
    clear_log(folder)
    env = guarded_env(folder, forbidden)
    env.update(PYTHONPATH=f"{env['PYTHONPATH']}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    process = subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True
    )
    return GuardedRun(process, forbidden_reads_logged(folder))


def stage_script(stage: str) -> str:
    return str(ROOT / "stages" / f"{stage}.py")


def write_params(project: Path, labeled_per_class: int) -> None:
    candidates = [{"name": n, "checkpoint": f"zoo/{n}.pt"} for n in ("first", "second")]
    params = {
        "device": "cpu",
        "data": {"source": "src", "target": TARGET_ROOT, "image_size": 8},
        "rank": {"enabled": True, "samples_per_class": 4, "candidates": candidates},
        "pretrain": {"backbone": "auto", "epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
        "adapt": {
            "method": "dann",  # reads both domains, so every validator is usable
            "target_labeled_per_class": labeled_per_class,
            "epochs": 2,
            "steps_per_epoch": 2,
            "batch_size": 8,
        },
        "selection": {"validator": CONFIGURED_VALIDATOR[labeled_per_class], "max_samples": 32},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@dataclass
class Project:
    root: Path
    labeled_per_class: int
    runs: dict[str, GuardedRun]


@pytest.fixture(scope="module", params=[0, 2], ids=["k=0", "k=2"])
def project(request, tmp_path_factory) -> Project:
    """A tiny raw project and its manifest, then each guarded stage up to adapt, in order."""
    k = request.param
    root = tmp_path_factory.mktemp(f"guarded_k{k}")
    make_tree(root / "src", seed=1)
    make_tree(root / TARGET_ROOT, seed=2)
    for name in ("first", "second"):
        save_classifier(root / "zoo" / f"{name}.pt", Classifier(project_spec()))
    write_params(root, k)
    # what validate writes (it lists the class folders by design), without its slow checks
    manifest = scan_domains(root / "src", root / TARGET_ROOT, 10**7).manifest()
    write_manifest(manifest, root / paths.MANIFEST)
    runs = {stage: run_guarded(root, [stage_script(stage)], FORBIDDEN) for stage in GUARDED_STAGES}
    return Project(root, k, runs)


@pytest.mark.parametrize("stage", GUARDED_STAGES)
def test_no_stage_before_evaluate_reads_target_test_data_or_target_labels(project, stage):
    project.runs[stage].check()


def test_the_guarded_runs_took_the_labeled_target_path_when_k_is_set(project):
    ranked = json.loads((project.root / paths.metrics_file("rank")).read_text())
    assert ranked["scored_on"] == ("target_labeled" if project.labeled_per_class else "source")
    assert ranked["sample_sizes"].get("target_labeled", 0) == 3 * project.labeled_per_class
    adapted = json.loads((project.root / paths.metrics_file("adapt")).read_text())
    assert adapted["validator"] == CONFIGURED_VALIDATOR[project.labeled_per_class]
    selection = json.loads((project.root / paths.SELECTION_RECORD).read_text())
    assert set(selection["by_validator"]) == set(VALIDATORS)  # every validator ran guarded


@pytest.mark.parametrize("project", [0], indirect=True, ids=["k=0"])
def test_the_guard_fails_a_stage_that_reads_the_target_test_split(project):
    """A planted leak: adapt peeks at the target test split whenever it loads a split."""
    leaky = (
        "import runpy\n"
        "from adaptflow.core import paths\n"
        "from adaptflow.data import pools\n"
        "real = pools.load_pool\n"
        "def peeking(path, *args, **kwargs):\n"
        "    real(paths.TARGET_TEST, 'peek', labeled=True)\n"
        "    return real(path, *args, **kwargs)\n"
        "pools.load_pool = peeking\n"
        f"runpy.run_path({stage_script('adapt')!r}, run_name='__main__')\n"
    )
    # run as `python stages/adapt.py` is: the guard finds its policy by the script's name
    driver = project.root / "planted" / "stages" / "adapt.py"
    driver.parent.mkdir(parents=True)
    driver.write_text(leaky)
    run = run_guarded(project.root, [str(driver)], FORBIDDEN)
    assert run.process.returncode != 0
    assert run.forbidden_reads == [
        {
            "process": "adapt",
            "event": "open",
            "path": str((project.root / paths.TARGET_TEST).resolve()),
            "forbidden": str((project.root / paths.TARGET_TEST).resolve()),
        }
    ]
    # the loader turns the guard's PermissionError into the stage's one-line error
    assert "target_test.pt" in run.process.stderr and "PermissionError" in run.process.stderr


def test_the_guard_fails_a_process_that_lists_the_target_class_folders(tmp_path):
    make_tree(tmp_path / TARGET_ROOT, seed=3)
    lister = ["-c", "import os; print(sorted(os.listdir('tgt/train')))"]
    run = run_guarded(tmp_path, lister, {"*": [TARGET_ROOT]})
    assert run.process.returncode != 0 and "PermissionError: leak guard" in run.process.stderr
    assert [r["event"] for r in run.forbidden_reads] == ["os.listdir"]
    unguarded = run_guarded(tmp_path, lister, {"*": []})  # the same process, nothing forbidden
    unguarded.check()
    assert unguarded.process.stdout.strip() == "['a', 'b', 'c']"
