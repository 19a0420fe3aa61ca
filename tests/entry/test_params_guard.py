"""dvc.lock claims only the params a stage's outputs were made with, even when params.yaml is
edited while the stage runs under a real `dvc repro`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import pinned_params, read_params_yaml
from adaptflow.entry.params_guard import declared_by_dvc, declared_params, params_as_used
from tests.helpers import ROOT
from tests.helpers.tiny_project import PY, git

# A stage that, like pretrain, works with its params over a while: it says it started, waits
# for the test's go, then writes the smoothing it trained with.
STAGE = """
import pathlib, time
from adaptflow.core.params import read_params_yaml
from adaptflow.entry.stage import run_entry_point

def main():
    pathlib.Path("started").touch()
    while not pathlib.Path("go").exists():
        time.sleep(0.05)
    pathlib.Path("model.txt").write_text(str(read_params_yaml()["train"]["smoothing"]))

run_entry_point(main, parse_arguments=False, check_params=False)
"""


def write_params(project: Path, smoothing: float, note: str = "a") -> None:
    params = {"train": {"smoothing": smoothing}, "report": {"note": note}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(STAGE)
    stage = {"cmd": f"{PY} train.py", "deps": ["train.py"], "params": ["train"]}
    stage["outs"] = [{"model.txt": {"persist": True}}]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    (tmp_path / ".gitignore").write_text("started\ngo\n")
    write_params(tmp_path, 0.1)
    git(tmp_path, "init", "-q")
    subprocess.run([PY, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "one stage")
    return tmp_path


def repro_while(project: Path, edit=None) -> subprocess.CompletedProcess:
    """`dvc repro`, applying `edit` once the stage has started and before it goes on."""
    for flag in ("started", "go"):
        (project / flag).unlink(missing_ok=True)
    run = subprocess.Popen(
        [PY, "-m", "dvc", "repro"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while not (project / "started").exists() and run.poll() is None:
        assert time.monotonic() < deadline, "the stage never started"
        time.sleep(0.05)
    if edit is not None:
        edit()
    (project / "go").touch()
    output, _ = run.communicate(timeout=60)
    return subprocess.CompletedProcess(run.args, run.returncode, output.decode(), None)


def locked_smoothing(project: Path) -> float | None:
    lock = project / "dvc.lock"
    if not lock.exists():
        return None
    stage = yaml.safe_load(lock.read_text())["stages"].get("train")
    return None if stage is None else stage["params"]["params.yaml"]["train"]["smoothing"]


def dvc_status(project: Path) -> str:
    return subprocess.run(
        [PY, "-m", "dvc", "status"], cwd=project, capture_output=True, text=True, check=True
    ).stdout


def test_a_param_edited_while_its_stage_runs_is_never_claimed_by_the_lock(project):
    assert repro_while(project).returncode == 0
    assert locked_smoothing(project) == 0.1 == float((project / "model.txt").read_text())

    write_params(project, 0.2)  # the run starts with 0.2; the user changes it to 0.3 meanwhile
    run = repro_while(project, edit=lambda: write_params(project, 0.3))

    assert run.returncode != 0
    assert (
        "adaptflow error: params.yaml changed while train ran (train.smoothing); its outputs "
        "were made with the values it started with" in run.stdout
    )
    assert "Traceback" not in run.stdout
    assert float((project / "model.txt").read_text()) == 0.2  # one reading, from the start
    assert locked_smoothing(project) == 0.1  # the previous run's entry, not 0.3
    assert "train" in dvc_status(project)  # stale: not "up to date"

    assert repro_while(project).returncode == 0  # the rerun applies the edit
    assert locked_smoothing(project) == 0.3 == float((project / "model.txt").read_text())
    assert "up to date" in dvc_status(project)


def test_an_edit_to_params_the_stage_does_not_declare_lets_it_finish(project):
    run = repro_while(project, edit=lambda: write_params(project, 0.1, note="edited"))
    assert run.returncode == 0, run.stdout
    assert locked_smoothing(project) == 0.1 == float((project / "model.txt").read_text())


def test_a_foreach_stage_declares_its_items_params(tmp_path):
    stage = {
        "foreach": ["x", "y"],
        "do": {"cmd": "echo ${item}", "params": ["seed", "methods.${item}"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"member": stage}}))
    (tmp_path / "params.yaml").write_text("seed: 1\nmethods: {x: 1, y: 2}\n")
    subprocess.run([PY, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path, check=True)
    assert declared_params("member@y", tmp_path) == {Path("params.yaml"): ["seed", "methods.y"]}


def test_a_stage_reads_one_version_of_params_while_it_runs(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\n")
    with pinned_params(path):
        path.write_text("seed: 2\n")
        assert read_params_yaml(path) == {"seed": 1}
    assert read_params_yaml(path) == {"seed": 2}


def test_a_declared_params_file_made_unreadable_mid_run_fails_the_stage(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"s": {"cmd": "true", "params": ["seed"]}}})
    )
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    subprocess.run([PY, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path, check=True)
    with pytest.raises(AdaptflowError, match=r"changed while s ran \(.*no longer readable\)"):
        with params_as_used("s", tmp_path):
            (tmp_path / "params.yaml").write_bytes(b"seed: \xff\n")


def test_reading_dvc_yaml_declares_what_dvcs_resolver_does_for_every_stage_of_ours():
    """The fast reading (a stage start pays it) and DVC's resolver agree on the real pipeline."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    members = yaml.safe_load((ROOT / "params.yaml").read_text())["adapt"]["portfolio"]["members"]
    names = [n for n, s in stages.items() if "foreach" not in s]
    names += [f"adapt_member@{member}" for member in members]
    for name in names:
        assert declared_params(name, ROOT) == declared_by_dvc(name, ROOT), name


def test_a_dvc_yaml_the_fast_reading_cannot_follow_is_left_to_dvc(tmp_path):
    stages = {
        "matrix": {
            "matrix": {"m": ["x"]},
            "cmd": "echo ${item.m}",
            "params": ["methods.${item.m}"],
        },
        "by_dict": {"foreach": {"x": {"k": 1}}, "do": {"cmd": "echo ${key}", "params": ["${key}"]}},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "params.yaml").write_text("methods: {x: 1}\nx: 2\n")
    subprocess.run([PY, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path, check=True)
    assert declared_params("matrix@x", tmp_path) == {Path("params.yaml"): ["methods.x"]}
    assert declared_params("by_dict@x", tmp_path) == {Path("params.yaml"): ["x"]}
