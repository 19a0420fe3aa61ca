"""The whole DVC pipeline on a small slice of the demo, in a temporary copy of the repository.

The domains are copies of the demo in plain folders, the way a user brings their own data
(`data.source` / `data.target` in params.yaml), not outputs of the demo_data stage.

One scenario, in order: a full run produces every output; a second run does nothing; a param
change reruns exactly the stages downstream of it; a corrupt image stops validation with its
path named and leaves every previous output intact; scrambled target labels change nothing
that adaptation reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = {
    "demo": {"source_limit": 600, "target_limit": 400},
    "validate": {"min_per_class": 5},
    "pretrain": {"epochs": 3, "steps_per_epoch": 25, "batch_size": 32},
    "adapt": {
        "method": "shot",  # one method; test_auto_... switches to the portfolio
        "epochs": 2,
        "steps_per_epoch": 10,
        "batch_size": 32,
        "portfolio": {"members": ["adabn", "coral"], "rule": "adapted_consensus"},
    },
    "selection": {"max_samples": 150},
    "export": {"latency_repeats": 2, "latency_batch_sizes": [1, 8]},
}
MEMBERS = {"adapt_member@adabn", "adapt_member@coral"}  # with adapt.method shot: records only
RESULTS = ("metrics/", "plots/", "reports/")
OUTPUTS = [
    "data/manifest.csv",
    "data/cache/target_train.pt",
    "models/source.pt",
    "models/adapted.pt",
    "models/candidates/selection.json",
    "models/model.onnx",
    "metrics/validate.json",
    "metrics/pretrain.json",
    "metrics/adapt.json",
    "metrics/evaluate.json",
    "metrics/export.json",
    "reports/validate.md",
    "reports/evaluate.md",
    "plots/evaluate/plots/sklearn/confusion_adapted.json",
]


def run(workspace: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=workspace, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def repro(workspace: Path, *args: str, check: bool = True) -> tuple[set[str], str, int]:
    """Run `dvc repro`; return the stages that ran, all output, and the exit status."""
    result = run(workspace, sys.executable, "-m", "dvc", "repro", *args, check=check)
    output = result.stdout + result.stderr
    return set(re.findall(r"Running stage '([\w@]+)'", output)), output, result.returncode


def commit(workspace: Path, message: str) -> None:
    run(
        workspace,
        "git",
        "-c",
        "user.email=e2e@adaptflow",
        "-c",
        "user.name=e2e",
        "commit",
        "-qm",
        message,
    )


def set_params(workspace: Path, section: str, **values) -> None:
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def fingerprints(workspace: Path) -> dict[str, bytes]:
    return {p: (workspace / p).read_bytes() for p in OUTPUTS}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("adaptflow")
    tracked = subprocess.run(
        # the working tree as git sees it: tracked files plus untracked ones it does not ignore
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in tracked:
        if name == "dvc.lock" or name.startswith(RESULTS):
            continue  # results of a run in the developer's checkout
        if (ROOT / name).is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, workspace / name)
    for section, values in OVERRIDES.items():
        set_params(workspace, section, **values)
    run(workspace, "git", "init", "-q")
    run(workspace, "git", "add", "-A")
    commit(workspace, "e2e copy")
    repro(workspace, "demo_data")
    for name in ("mnist", "digits"):
        shutil.copytree(workspace / "data/demo" / name, workspace / "userdata" / name)
    set_params(workspace, "data", source="userdata/mnist", target="userdata/digits")
    return workspace


def test_a_full_run_produces_every_output(workspace):
    ran, output, _ = repro(workspace)
    assert (
        ran == {"validate", "prepare", "rank", "pretrain", "adapt", "evaluate", "export"} | MEMBERS
    )
    for name in OUTPUTS:
        assert (workspace / name).is_file(), name
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    for key in (
        "target_accuracy",
        "target_macro_f1",
        "source_test_accuracy",
        "source_only_target_accuracy",
        "target_ece",
    ):
        assert 0.0 <= evaluation[key] <= 1.0, key
    assert isinstance(evaluation["negative_transfer"], bool)
    assert set(evaluation["adapted"]["target"]["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert evaluation["source_only"]["source_test_accuracy"] > 0.5  # the source task is learned
    export = json.loads((workspace / "metrics/export.json").read_text())
    assert export["max_abs_logit_diff"] <= 1e-4 and export["top1_agreement"] == 1.0
    assert "PASSED" in (workspace / "reports/validate.md").read_text()
    assert not list(workspace.rglob("*.tmp"))


def test_a_second_run_does_nothing(workspace):
    lock = (workspace / "dvc.lock").read_bytes()
    before = fingerprints(workspace)
    started = time.perf_counter()
    ran, output, _ = repro(workspace)
    print(f"no-op dvc repro: {time.perf_counter() - started:.2f} s")
    assert ran == set() and "Data and pipelines are up to date" in output
    assert (workspace / "dvc.lock").read_bytes() == lock and fingerprints(workspace) == before


def test_an_adapt_param_reruns_the_adapt_stages_evaluate_and_export_only(workspace):
    set_params(workspace, "adapt", lr=0.02)
    assert repro(workspace)[0] == {"adapt", "evaluate", "export"} | MEMBERS


def test_an_export_param_reruns_export_only(workspace):
    set_params(workspace, "export", latency_repeats=3)
    assert repro(workspace)[0] == {"export"}


def test_a_validation_rerun_with_the_same_manifest_trains_nothing(workspace):
    set_params(workspace, "validate", min_per_class=4)
    assert repro(workspace)[0] == {"validate"}


def test_a_corrupt_image_stops_validation_naming_it_and_keeps_every_output(workspace):
    before = fingerprints(workspace)
    image = sorted((workspace / "userdata/digits/test/3").iterdir())[0]
    original = image.read_bytes()
    image.write_bytes(original[: len(original) // 3])
    ran, output, status = repro(workspace, check=False)
    relative = image.relative_to(workspace).as_posix()
    assert status != 0 and ran == {"validate"}
    assert re.search(
        rf"adaptflow error: validation failed: 'every image decodes' failed for "
        rf"{re.escape(relative)}: cannot be decoded",
        output,
    )
    assert "## FAIL: every image decodes" in (workspace / "reports/validate.md").read_text()
    after = fingerprints(workspace)
    changed = {p for p in OUTPUTS if before[p] != after[p]}
    assert changed == {"reports/validate.md", "metrics/validate.json"}  # they describe the failure
    assert not list(workspace.rglob("*.tmp"))

    image.write_bytes(original)
    assert repro(workspace)[0] == {"validate"}  # same manifest as before: nothing downstream
    assert fingerprints(workspace)["data/manifest.csv"] == before["data/manifest.csv"]


def test_scrambled_target_train_labels_change_nothing_adaptation_reads(workspace):
    adapted = torch.load(workspace / "models/adapted.pt", weights_only=True)["state_dict"]
    selection = (workspace / "models/candidates/selection.json").read_text()
    train = workspace / "userdata/digits/train"
    for a, b in (("1", "7"), ("3", "8")):  # swap whole class folders: every label is now wrong
        shutil.move(train / a, train / "swap")
        shutil.move(train / b, train / a)
        shutil.move(train / "swap", train / b)
    ran, _, _ = repro(workspace)
    assert ran == {"validate", "prepare"}  # the unlabeled target cache came out byte-identical
    assert repro(workspace, "--force", "--single-item", "adapt")[0] == {"adapt"}
    rerun = torch.load(workspace / "models/adapted.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(adapted[k], rerun[k]) for k in adapted)  # and CPU runs are repeatable
    assert (workspace / "models/candidates/selection.json").read_text() == selection


def test_the_sweep_ranks_methods_without_labels_in_one_dvc_experiment(workspace):
    # as a DVC user would: results committed, so experiments reuse the stages a method leaves alone
    run(workspace, "git", "add", "dvc.lock", "params.yaml", "metrics", "plots", "reports")
    commit(workspace, "results")
    params_before = (workspace / "params.yaml").read_bytes()
    result = run(workspace, sys.executable, "-m", "adaptflow.sweep", "adabn", "tent")
    ran = set(re.findall(r"Running stage '([\w@]+)'", result.stdout + result.stderr))
    # the user data was copied in, not rerun; each method is a portfolio member stage
    assert ran == {"adapt_member@adabn", "adapt_member@tent", "adapt", "evaluate", "export"}
    rows = [line.split("|") for line in result.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [int(r[1]) for r in rows] == [1, 2, 3]  # ranked by the label-free score
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    by_method = {r[2].strip(): r for r in rows}
    assert set(by_method) == {"source_only (no adaptation)", "adabn", "tent"}
    assert sum(r[4].strip() == "yes" for r in rows) == 1  # one kept
    assert "target accuracy (oracle)" in result.stdout
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    assert float(by_method["source_only (no adaptation)"][7]) == pytest.approx(
        evaluation["source_only_target_accuracy"], abs=1e-4
    )  # the same source model as the workspace's
    assert (workspace / "params.yaml").read_bytes() == params_before  # workspace untouched


def temps(workspace: Path) -> list[Path]:
    return [p for p in workspace.rglob("*.tmp") if ".venv" not in p.parts]


def test_a_killed_adapt_stage_resumes_and_ends_with_the_same_weights(workspace, monkeypatch):
    set_params(workspace, "adapt", epochs=6, steps_per_epoch=40, lr=0.015)
    before = fingerprints(workspace)
    state = workspace / ".adaptflow/checkpoints/adapt/state.pt"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=workspace,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not state.exists():  # the first epoch's checkpoint: now we are mid-way
        assert process.poll() is None and time.monotonic() < deadline, "adapt ended too soon"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert fingerprints(workspace)["models/adapted.pt"] == before["models/adapted.pt"]
    # what the kill left can only be hidden temporaries, never a file at an output's path
    assert all(
        p.name.startswith(".") and p.name.endswith(".adaptflow.tmp") for p in temps(workspace)
    )

    monkeypatch.setenv("ADAPTFLOW_LOG_LEVEL", "INFO")  # the resume message is an info line
    ran, output, _ = repro(workspace)
    monkeypatch.setenv("ADAPTFLOW_LOG_LEVEL", "WARNING")
    assert "adapt" in ran and re.search(r"adapt: resuming after epoch [1-5] ", output), output
    assert not temps(workspace)  # swept when the stage restarted
    assert not state.exists()  # cleared once the outputs are written
    resumed = torch.load(workspace / "models/adapted.pt", weights_only=True)["state_dict"]
    repro(workspace, "--force", "--single-item", "adapt")  # the same run, never interrupted
    uninterrupted = torch.load(workspace / "models/adapted.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)  # bitwise on CPU


def test_a_second_repro_at_the_same_time_fails_cleanly(workspace):
    set_params(workspace, "export", latency_repeats=5)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.5)  # the first one holds the repository lock while export runs
    ran, output, status = repro(workspace, check=False)
    first_status, first_output = first.wait(), first.stdout.read()
    # DVC refuses the second run: the repository lock, or the stage lock once the first is inside
    assert status != 0 and ran == set(), output
    assert "Unable to acquire lock" in output or "is busy, it is being blocked by" in output
    assert first_status == 0 and "Running stage 'export'" in first_output
    assert repro(workspace)[0] == set()  # nothing left half done


def test_the_team_workflow_push_clone_pull_reruns_nothing(workspace, tmp_path_factory):
    remote, clone = tmp_path_factory.mktemp("remote"), tmp_path_factory.mktemp("clone") / "repo"
    dvc = [sys.executable, "-m", "dvc"]
    run(workspace, *dvc, "add", "userdata")  # the raw data goes to DVC too
    run(workspace, *dvc, "remote", "add", "-d", "team", str(remote))
    run(workspace, "git", "add", "-A")
    commit(workspace, "results and data")
    run(workspace, *dvc, "push")
    run(workspace.parent, "git", "clone", "-q", str(workspace), str(clone))
    run(clone, *dvc, "pull")
    ran, output, _ = repro(clone)
    assert ran == set() and "Data and pipelines are up to date" in output
    assert (clone / "models/model.onnx").read_bytes() == (
        workspace / "models/model.onnx"
    ).read_bytes()


def test_pretrain_auto_takes_the_ranked_candidate_and_only_a_new_winner_retrains(workspace):
    zoo = workspace / "zoo"
    zoo.mkdir()
    shutil.copy(workspace / "models/source.pt", zoo / "trained.pt")
    untrained = torch.load(zoo / "trained.pt", weights_only=True)
    untrained["state_dict"] = {k: torch.zeros_like(v) for k, v in untrained["state_dict"].items()}
    torch.save(untrained, zoo / "zeros.pt")
    candidates = [
        {"name": "zeros", "checkpoint": "zoo/zeros.pt"},
        {"name": "trained", "checkpoint": "zoo/trained.pt"},
    ]
    set_params(workspace, "rank", enabled=True, samples_per_class=10, candidates=candidates)
    set_params(workspace, "pretrain", backbone="auto")
    ran, _, _ = repro(workspace)
    assert {"rank", "pretrain", "adapt"} <= ran
    ranking = json.loads((workspace / "metrics/rank.json").read_text())
    assert ranking["choice"]["name"] == "trained"
    assert set(ranking["candidates"]) == {"zeros", "trained"}
    assert "| trained |" in (workspace / "reports/rank.md").read_text()
    info = torch.load(workspace / "models/source.pt", weights_only=True)["info"]
    assert "candidate trained" in info["backbone"]

    set_params(workspace, "rank", samples_per_class=12)  # new scores, same winner
    ran, _, _ = repro(workspace)
    assert ran == {"rank"}


def test_adapt_on_two_processes_writes_once_and_a_batch_that_does_not_split_is_refused(workspace):
    # that N processes train what one does is tests/test_distributed.py; this is the user's path:
    # params -> dvc repro -> the stage relaunches under torchrun -> rank 0 writes the outputs
    set_params(workspace, "distributed", nproc_per_node=2)
    ran, _, _ = repro(workspace, "--single-item", "adapt")
    assert ran == {"adapt"}
    adapt = json.loads((workspace / "metrics/adapt.json").read_text())
    assert adapt["processes"] == 2 and adapt["epochs"] >= 1
    assert (workspace / "plots/adapt/metrics.json").is_file()
    assert (workspace / "models/candidates/selection.json").is_file()
    assert not list(workspace.rglob("*.adaptflow.tmp"))

    before = fingerprints(workspace)
    set_params(workspace, "adapt", batch_size=33)
    _, output, code = repro(workspace, "--single-item", "adapt", check=False)
    assert code != 0
    assert output.count("adaptflow error: adapt.batch_size=33 does not split evenly over 2") == 1
    assert fingerprints(workspace) == before


def test_auto_adapts_each_member_in_its_own_stage_and_keeps_the_rules_choice(workspace):
    set_params(workspace, "distributed", nproc_per_node=1)
    set_params(workspace, "adapt", method="auto", batch_size=32)
    ran, _, _ = repro(workspace)
    assert ran == MEMBERS | {"adapt", "evaluate", "export"}
    adaptation = json.loads((workspace / "metrics/adapt.json").read_text())
    assert adaptation["method"] == "auto" and adaptation["validator"] == "adapted_consensus"
    assert set(adaptation["scores"]["adapted_consensus"]) == {"source_only", "adabn", "coral"}
    assert adaptation["chosen"] == adaptation["picks"]["adapted_consensus"]
    assert isinstance(adaptation["warnings"], list)
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    assert set(evaluation["selection"]["candidates"]) == {"source_only", "adabn", "coral"}
    assert evaluation["target_accuracy"] == pytest.approx(
        evaluation["selection"]["candidates"][adaptation["chosen"]]
    )
    report = (workspace / "reports/evaluate.md").read_text()
    assert "## Portfolio (adapt.method: auto)" in report and "(kept)" in report
    assert report.splitlines()[2].startswith("**Target accuracy")

    coral = yaml.safe_load((workspace / "params.yaml").read_text())["adapt"]["coral"]
    set_params(workspace, "adapt", coral={**coral, "trade_off": 0.5})
    ran, _, _ = repro(workspace)
    assert {"adapt_member@coral", "adapt"} <= ran and "adapt_member@adabn" not in ran

    portfolio = yaml.safe_load((workspace / "params.yaml").read_text())["adapt"]["portfolio"]
    set_params(workspace, "adapt", portfolio={**portfolio, "rule": "mixval"})
    ran, _, _ = repro(workspace)
    assert "adapt" in ran and not ran & MEMBERS  # a new rule retrains nothing
    assert json.loads((workspace / "metrics/adapt.json").read_text())["validator"] == "mixval"
