"""The whole DVC pipeline on a small slice of the demo, in a temporary copy of the repository.

The domains are copies of the demo in plain folders, the way a user brings their own data
(`data.source` / `data.target` in params.yaml), not outputs of the demo_data stage.

One scenario, in order: a full run produces every output; a second run does nothing; a param
change reruns exactly the stages downstream of it; a corrupt image stops validation with its
path named and leaves every previous output intact; scrambled target labels change nothing
that adaptation reads.

Every process the scenario starts runs under the leak guard (tests/helpers/leak_guard): a stage
before evaluate that reads target test data or target labels fails, and the test names it.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from adaptflow.bench.common import copy_working_tree
from adaptflow.models.classifier import load_classifier
from tests.helpers import ROOT
from tests.helpers.browser import chromium_driver
from tests.helpers.leak_guard import clear_log, forbidden_reads, forbidden_reads_logged, guarded_env
from tests.helpers.prefect_server import read_artifacts

# the slowest test (kill and resume adapt) took 1,172 s on 2 cores shared with ~5 other
# suites (load average ~10); the default per-test limit in pyproject.toml is shorter
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
# made and removed by the module's fixture, not at import: every xdist worker imports this module
# while collecting, and only the one that runs it would remove a folder made then
LEAK_GUARD = Path(tempfile.gettempdir()) / f"adaptflow-e2e-leak-guard-{os.getpid()}"
# the target domain lives in two places: the demo's copy and the user's folder
FORBIDDEN = forbidden_reads("data/demo/digits", "userdata/digits")
OVERRIDES = {
    "demo": {"source_limit": 600, "target_limit": 400},
    "validate": {"min_per_class": 5},
    "pretrain": {"epochs": 3, "steps_per_epoch": 25, "batch_size": 32},
    "adapt": {
        "method": "shot",  # one method; test_auto_... switches to the portfolio
        "epochs": 2,
        "steps_per_epoch": 10,
        "batch_size": 32,
        "portfolio": {"members": ["tent", "coral"], "rule": "adapted_consensus", "budget": 2.5},
    },
    "selection": {"max_samples": 150},
    "export": {"latency_repeats": 2, "latency_batch_sizes": [1, 8]},
}
MEMBERS = {"adapt_member@tent", "adapt_member@coral"}  # with adapt.method shot: records only
RESULTS = ("metrics/", "plots/", "reports/")
OUTPUTS = [
    "data/manifest.csv",
    "data/cache/target_train.pt",
    "models/source.pt",
    "models/adapted.pt",
    "models/selection/record.json",
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


def stage_env() -> dict[str, str]:
    """The environment of every process the scenario starts: this venv first, leak guard on."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return guarded_env(LEAK_GUARD, FORBIDDEN, env)


@pytest.fixture(scope="module", autouse=True)
def leak_guard_folder():
    """The folder of the guard's policy and log, for this module's tests only."""
    LEAK_GUARD.mkdir(exist_ok=True)
    yield LEAK_GUARD
    shutil.rmtree(LEAK_GUARD, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_forbidden_reads():
    """After each test: no stage read what the leak guard forbids (it also failed the stage)."""
    clear_log(LEAK_GUARD)
    yield
    assert forbidden_reads_logged(LEAK_GUARD) == []


def run(workspace: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=workspace, env=stage_env(), capture_output=True, text=True)
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
    # the working tree as git sees it, without the results of a run in the developer's checkout
    copy_working_tree(ROOT, workspace, skip=("dvc.lock", *RESULTS))
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


def recomputed(workspace: Path, model_file: str) -> tuple[float, float, float]:
    """Accuracy, macro-F1 (scikit-learn's) and ECE of a model on the target test split,
    computed here: a plain forward pass, scikit-learn, and equal-width bins in numpy."""
    bin_count = yaml.safe_load((workspace / "params.yaml").read_text())["evaluate"]["ece_bins"]
    model, _ = load_classifier(workspace / model_file)
    split = torch.load(workspace / "data/cache/target_test.pt", weights_only=True)
    with torch.no_grad():
        probs = model.eval()(split["images"].float() / 255).softmax(1).numpy()
    labels, predicted = split["labels"].numpy(), probs.argmax(1)
    confidence, correct = probs.max(1), predicted == labels
    bins = np.minimum((confidence * bin_count).astype(int), bin_count - 1)  # none on an edge
    ece = sum(
        np.mean(bins == b) * abs(correct[bins == b].mean() - confidence[bins == b].mean())
        for b in np.unique(bins)
    )
    return float(correct.mean()), float(f1_score(labels, predicted, average="macro")), float(ece)


def test_a_full_run_produces_every_output(workspace):
    ran, output, _ = repro(workspace)
    assert (
        ran == {"validate", "prepare", "rank", "pretrain", "adapt", "evaluate", "export"} | MEMBERS
    )
    for name in OUTPUTS:
        assert (workspace / name).is_file(), name
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    assert isinstance(evaluation["negative_transfer"], bool)
    assert set(evaluation["per_class_target_accuracy"]) == {str(d) for d in range(10)}
    assert evaluation["source_only_source_test_accuracy"] > 0.5  # the source task is learned
    print(
        f"target accuracy {evaluation['target_accuracy']:.3f}, source-only "
        f"{evaluation['source_only_target_accuracy']:.3f}"
    )
    # SHOT helps on this slice, even in two short epochs
    assert evaluation["target_accuracy"] > evaluation["source_only_target_accuracy"] + 0.1
    for model, prefix, plot in (
        ("models/adapted.pt", "target_", "confusion_adapted.json"),
        ("models/source.pt", "source_only_target_", "confusion_source_only.json"),
    ):
        accuracy, macro_f1, ece = recomputed(workspace, model)
        assert evaluation[f"{prefix}accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert evaluation[f"{prefix}macro_f1"] == pytest.approx(macro_f1, abs=1e-6)
        if prefix == "target_":
            assert evaluation["target_ece"] == pytest.approx(ece, abs=1e-5)
        saved = json.loads((workspace / "plots/evaluate/plots/sklearn" / plot).read_text())
        truth, predicted = [p["actual"] for p in saved], [p["predicted"] for p in saved]
        assert accuracy_score(truth, predicted) == pytest.approx(accuracy, abs=1e-6)
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


def test_dvc_plots_show_leaves_nothing_for_git_to_track(workspace):
    run(workspace, sys.executable, "-m", "dvc", "plots", "show")
    assert (workspace / "dvc_plots/index.html").is_file()
    untracked = run(workspace, "git", "status", "--porcelain", "--untracked-files=all").stdout
    assert "dvc_plots" not in untracked


def test_predict_on_the_target_test_folder_agrees_with_evaluate(workspace):
    """The exported model alone, fed the image files, scores what evaluate scored."""
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    adaptflow = [sys.executable, "-m", "adaptflow"]
    result = run(workspace, *adaptflow, "predict", "userdata/digits/test", "-b", "50")
    predictions = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(predictions) == evaluation["target_test_images"]
    assert all(p["label"] and p["predicted"] and not p["error"] for p in predictions)
    accuracy = float(re.search(r"accuracy ([\d.]+) \(", result.stderr).group(1))
    assert accuracy == pytest.approx(evaluation["target_accuracy"], abs=0.005)  # 0.5 point
    print(result.stderr.strip())  # the summary, with img/s

    results = run(workspace, *adaptflow, "results").stdout
    assert f"target accuracy {evaluation['target_accuracy']:.4f}" in results
    status = run(workspace, *adaptflow, "status").stdout
    assert status.count("up to date") == 8 + len(MEMBERS)  # the second run did nothing


def test_the_scheduled_flow_skips_everything_then_reruns_when_target_images_arrive(
    workspace, prefect_server, monkeypatch
):
    # what a nightly deployment run does: the flow of flows/pipeline.py, on a real server
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    spec = importlib.util.spec_from_file_location("_e2e_flow", ROOT / "flows/pipeline.py")
    flow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flow)

    def nightly_run() -> tuple[dict[str, dict], dict]:
        with prefect_server.settings():
            state = flow.pipeline(root=str(workspace), return_state=True)
        records = {r["stage"]: r for r in state.result()}
        return records, read_artifacts(prefect_server, state.state_details.flow_run_id)

    records, _ = nightly_run()
    assert {r["status"] for r in records.values()} == {"skipped"}, records

    train = workspace / "userdata/digits/train"
    for label in ("0", "5"):  # new scans arrive: inverted copies, so unlike any existing image
        image = sorted((train / label).iterdir())[0]
        inverted = Image.eval(Image.open(image), lambda value: 255 - value)
        inverted.save(train / label / f"new-{image.name}")
    records, artifacts = nightly_run()
    ran = {name for name, r in records.items() if r["status"] == "ran"}
    assert ran == {"validate", "prepare", "rank", "adapt", "evaluate", "export"} | MEMBERS
    assert records["pretrain"]["status"] == "skipped"  # the source model does not read the target
    assert "changed deps: userdata/digits (modified)" in records["validate"]["reason"]
    assert "data/cache/target_train.pt (modified)" in records["adapt"]["reason"]
    report = artifacts["adaptflow-report"]
    assert "| validate | ran |" in report and "| pretrain | skipped |" in report
    assert "changed deps: userdata/digits (modified)" in report


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
    selection = (workspace / "models/selection/record.json").read_text()
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
    assert (workspace / "models/selection/record.json").read_text() == selection


def test_compare_ranks_methods_without_labels_in_one_dvc_experiment(workspace):
    # as a DVC user would: results committed, so experiments reuse the stages a method leaves alone
    run(workspace, "git", "add", "dvc.lock", "params.yaml", "metrics", "plots", "reports")
    commit(workspace, "results")
    params_before = (workspace / "params.yaml").read_bytes()
    result = run(workspace, sys.executable, "-m", "adaptflow", "compare", "adabn", "tent")
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


def test_make_ci_report_writes_the_pull_request_report(workspace):
    # the compare test committed the results: that commit is the base the report compares with
    repeats = yaml.safe_load((workspace / "params.yaml").read_text())["export"]["latency_repeats"]
    set_params(workspace, "export", latency_repeats=repeats + 1)
    assert repro(workspace)[0] == {"export"}
    python_bin = Path(sys.executable).parent  # the test's environment; never install here
    run(workspace, "make", f"BIN={python_bin}", "-o", ".venv/.installed", "ci-report", "BASE=HEAD")
    report = (workspace / "ci-report/report.md").read_text()
    assert report.startswith("# adaptflow pipeline report (against HEAD (")
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    accuracy = f"target accuracy {evaluation['target_accuracy']:.4f}"
    assert re.search(rf"\| evaluate \| {accuracy} .*\| {accuracy} .*\|", report)  # both revisions
    assert "dvc metrics diff HEAD" in report and "latency.batch_1.onnxruntime_ms" in report
    changed = rf"\| params.yaml +\| export.latency_repeats +\| {repeats} +\| {repeats + 1} +\|"
    assert re.search(changed, report), report
    images = re.findall(r"!\[[^\]]+\]\(\./([^)]+)\)", report)
    assert len(images) == 3
    for image in images:
        assert (workspace / "ci-report" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def temps(workspace: Path) -> list[Path]:
    return [p for p in workspace.rglob("*.tmp") if ".venv" not in p.parts]


def test_a_killed_adapt_stage_resumes_and_ends_with_the_same_weights(workspace, monkeypatch):
    set_params(workspace, "adapt", epochs=3, steps_per_epoch=20, lr=0.015)
    before = fingerprints(workspace)
    state = workspace / ".adaptflow/checkpoints/adapt/state.pt"
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=workspace,
        env=stage_env(),
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
    assert "adapt" in ran and re.search(r"adapt: resuming after epoch [12] ", output), output
    assert not temps(workspace)  # swept when the stage restarted
    assert not state.exists()  # cleared once the outputs are written
    resumed = torch.load(workspace / "models/adapted.pt", weights_only=True)["state_dict"]
    repro(workspace, "--force", "--single-item", "adapt")  # the same run, never interrupted
    uninterrupted = torch.load(workspace / "models/adapted.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)  # bitwise on CPU


def test_a_second_repro_at_the_same_time_fails_cleanly(workspace):
    set_params(workspace, "export", latency_repeats=5)
    first = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=workspace,
        env=stage_env(),
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
    ran, _, _ = repro(workspace, "adapt")  # up to adapt: evaluate and export add nothing here
    assert {"rank", "pretrain", "adapt"} <= ran
    ranking = json.loads((workspace / "metrics/rank.json").read_text())
    assert ranking["choice"]["name"] == "trained"
    assert set(ranking["candidates"]) == {"zeros", "trained"}
    assert "| trained |" in (workspace / "reports/rank.md").read_text()
    info = torch.load(workspace / "models/source.pt", weights_only=True)["info"]
    assert "candidate trained" in info["backbone"]

    set_params(workspace, "rank", samples_per_class=12)  # new scores, same winner
    ran, _, _ = repro(workspace, "adapt")
    assert ran == {"rank"}


def test_adapt_on_two_processes_writes_once_and_a_batch_that_does_not_split_is_refused(workspace):
    # that N processes train what one does is tests/training/test_distributed.py; this is the
    # user's path: params -> dvc repro -> the stage relaunches under torchrun -> rank 0 writes
    # the outputs
    set_params(workspace, "distributed", nproc_per_node=2)
    ran, _, _ = repro(workspace, "--single-item", "adapt")
    assert ran == {"adapt"}
    adapt = json.loads((workspace / "metrics/adapt.json").read_text())
    assert adapt["processes"] == 2 and adapt["epochs"] >= 1
    assert (workspace / "plots/adapt/metrics.json").is_file()
    assert (workspace / "models/selection/record.json").is_file()
    assert not list(workspace.rglob("*.adaptflow.tmp"))

    before = fingerprints(workspace)
    set_params(workspace, "adapt", batch_size=33)
    _, output, code = repro(workspace, "--single-item", "adapt", check=False)
    assert code != 0
    assert output.count("adaptflow error: adapt.batch_size=33 does not split evenly over 2") == 1
    assert fingerprints(workspace) == before


def test_auto_adapts_each_member_in_its_own_stage_and_keeps_the_rules_choice(workspace):
    set_params(workspace, "distributed", nproc_per_node=1)
    set_params(workspace, "adapt", method="auto", batch_size=32, epochs=2, steps_per_epoch=10)
    set_portfolio(workspace, budget=1.5)  # two members over 2 epochs: one each, then one more
    ran, _, _ = repro(workspace)
    assert ran == MEMBERS | {"adapt", "evaluate", "export"}
    adaptation = json.loads((workspace / "metrics/adapt.json").read_text())
    assert adaptation["method"] == "auto" and adaptation["rule"] == "adapted_consensus"
    budget = adaptation["budget"]
    assert (budget["member_epochs"], budget["single_method_epochs"]) == (3, 2)
    first, last = budget["rungs"]
    assert first["epoch"] == 1 and set(first["scores"]) == {"source_only", "tent", "coral"}
    [survivor] = {"tent", "coral"} - set(first["dropped"])
    assert last["epoch"] == 2 and set(last["scores"]) == {"source_only", survivor}
    assert set(adaptation["scores"]["adapted_consensus"]) == {"source_only", survivor}
    trained = {m: r["trained_to_epoch"] for m, r in adaptation["members"].items()}
    [dropped] = first["dropped"]
    assert trained == {survivor: 2, dropped: 1}
    assert adaptation["members"][survivor]["resumed_after_epoch"] == 1  # its stage's rung
    assert adaptation["chosen"] == adaptation["picks"]["adapted_consensus"]
    assert isinstance(adaptation["warnings"], list)
    evaluation = json.loads((workspace / "metrics/evaluate.json").read_text())
    assert set(evaluation["selection"]["models"]) == {"source_only", "tent", "coral"}
    assert evaluation["target_accuracy"] == pytest.approx(
        evaluation["selection"]["models"][adaptation["chosen"]]
    )
    report = (workspace / "reports/evaluate.md").read_text()
    assert "## Portfolio (adapt.method: auto)" in report and "(kept)" in report
    assert f"after epoch 1 the rule dropped {dropped}" in report
    assert report.splitlines()[2].startswith("**Target accuracy")

    coral = yaml.safe_load((workspace / "params.yaml").read_text())["adapt"]["coral"]
    set_params(workspace, "adapt", coral={**coral, "trade_off": 0.5})
    ran, _, _ = repro(workspace, "adapt")  # up to the choice: evaluate and export add nothing
    assert {"adapt_member@coral", "adapt"} <= ran and "adapt_member@tent" not in ran

    set_portfolio(workspace, rule="mixval")
    ran, _, _ = repro(workspace, "adapt")
    assert "adapt" in ran and not ran & MEMBERS  # a new rule reruns no member stage
    assert json.loads((workspace / "metrics/adapt.json").read_text())["rule"] == "mixval"
    set_portfolio(workspace, rule="adapted_consensus")
    ran, _, _ = repro(workspace, "adapt")
    assert ran == {"adapt"}
    members = json.loads((workspace / "metrics/adapt.json").read_text())["members"]
    [survivor] = [m for m in members.values() if m["trained_to_epoch"] == 2]
    assert survivor["resumed_after_epoch"] == 2  # this rule's survivor reached it before

    set_portfolio(workspace, budget="full")  # each member's stage goes on from its rung
    ran, _, _ = repro(workspace, "adapt")
    assert ran == MEMBERS | {"adapt"}
    for member in ("tent", "coral"):
        record = json.loads((workspace / f"models/portfolio/{member}/record.json").read_text())
        assert record["trained_to_epoch"] == 2 and record["resumed_after_epoch"] >= 1


def set_portfolio(workspace: Path, **values) -> None:
    portfolio = yaml.safe_load((workspace / "params.yaml").read_text())["adapt"]["portfolio"]
    set_params(workspace, "adapt", portfolio={**portfolio, **values})


def test_labels_asked_for_by_adaptflow_label_choose_the_kept_model_and_retrain_nothing(workspace):
    """Two rounds of `adaptflow label`, answered from the target class folders (the test stands
    in for the user), then `dvc repro` retrains no member; a target test image in the labels
    file is refused by validate."""
    repro(workspace)  # the portfolio of the test before, up to export
    sheet = workspace / "to_label" / "to_label.csv"
    for _ in range(2):
        run(workspace, "adaptflow", "label", "--export", "to_label")  # guarded as "label"
        rows = list(csv.DictReader(sheet.open()))
        assert len(rows) == 8 and all((workspace / "to_label" / r["path"]).is_file() for r in rows)
        answers = "".join(f"{r['path']},{r['path'].split('/')[1]}\n" for r in rows)
        sheet.write_text("path,label\n" + answers)
        run(workspace, "adaptflow", "label", "--import", str(sheet))
    labels_file = workspace / "labels" / "target.csv"
    assert len(labels_file.read_text().splitlines()) == 1 + 16
    queries = list(csv.DictReader((workspace / "labels" / "queries.csv").open()))
    assert [q["round"] for q in queries] == ["1"] * 8 + ["2"] * 8

    ran, _, _ = repro(workspace)
    # no member, nothing upstream; export only if the kept model changed
    assert {"validate", "adapt", "evaluate"} <= ran <= {"validate", "adapt", "evaluate", "export"}
    adaptation = json.loads((workspace / "metrics/adapt.json").read_text())
    labeled = adaptation["labeled_selection"]
    assert (labeled["labels"], labeled["from_labels_file"]) == (16, 16)
    assert adaptation["chosen"] == labeled["kept"]
    assert sum(labeled["p_best"].values()) == pytest.approx(1.0, abs=1e-3)
    assert labeled["label_free_pick"] == adaptation["picks"]["adapted_consensus"]
    assert labeled["accuracy"]["importance_weighted"]
    interval = labeled["accuracy"]
    assert interval["low"] <= interval["estimate"] <= interval["high"]
    report = (workspace / "reports/evaluate.md").read_text()
    assert f"Kept {labeled['kept']}: best with probability" in report

    tuning = {"epochs": 1, "method": "fixmatch", "held_out": 0.5}
    set_portfolio(workspace, finetune_on_labels=tuning)  # the labels put to work
    ran, _, _ = repro(workspace)
    assert {"adapt", "evaluate"} <= ran <= {"adapt", "evaluate", "export"}  # no member retrains
    tuned = json.loads((workspace / "metrics/adapt.json").read_text())["labeled_selection"]
    tuned = tuned["finetune"]
    assert (tuned["model"], tuned["trained_on"], tuned["held_out"]) == (
        f"{labeled['kept']}+labels",
        8,
        8,
    )
    scored = json.loads((workspace / "metrics/evaluate.json").read_text())["selection"]["models"]
    assert tuned["model"] in scored  # on target test, beside the model it started from
    assert "Fine-tuned on 8 of the labels (fixmatch, 1 epoch)" in (
        (workspace / "reports/evaluate.md").read_text()
    )
    set_portfolio(workspace, finetune_on_labels={**tuning, "epochs": 0})

    test_image = next((workspace / "userdata/digits/test").rglob("*.png"))
    planted = test_image.relative_to(workspace / "userdata/digits").as_posix()
    kept = labels_file.read_text()
    labels_file.write_text(kept + f"{planted},{test_image.parent.name}\n")
    _, output, code = repro(workspace, check=False)
    assert code != 0
    assert f"labels/target.csv line 18 ({planted}): a target test image" in output
    labels_file.write_text(kept)


def ctrl_c_stops() -> None:
    """In the child: SIGINT as in a terminal's foreground, even where the test runner was
    started in the background (which ignores it, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


IMAGE_WIDTH = "return document.getElementById('image').naturalWidth"


def test_the_labeling_page_in_a_browser_saves_each_answer_and_undo_takes_one_back(workspace):
    """`adaptflow label --serve` in headless Chromium, used as a person would: two answers by
    click and one by key (the true class, read from the folder: the test stands in for the
    user), then undo; labels/target.csv holds the two answers kept, as soon as they are given."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium_driver()

    def saved() -> set[tuple[str, str]]:
        return {(r["path"], r["label"]) for r in csv.DictReader(labels_file.open())}

    labels_file = workspace / "labels" / "target.csv"
    before = saved()
    args = ["adaptflow", "label", "--serve", "--port", "0", "--rounds", "1", "--round-size", "4"]
    server = subprocess.Popen(
        args, cwd=workspace, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, preexec_fn=ctrl_c_stops,
    )  # fmt: skip
    try:
        printed = []
        while not (address := re.search(r"http://127\.0\.0\.1:\d+/", "".join(printed))):
            line = server.stdout.readline()
            assert line, f"the server stopped:\n{''.join(printed)}"
            printed.append(line)
        browser.get(address.group())
        wait = WebDriverWait(browser, 60)

        def answered(count: int) -> None:
            body = (By.TAG_NAME, "body")
            wait.until(lambda b: b.find_element(*body).get_attribute("data-answered") == str(count))

        answered(0)
        assert browser.find_element(By.ID, "progress").text == "0 of 4"
        assert re.fullmatch(
            r"favourite: \w+ \(best with probability [01]\.\d\d\)",
            browser.find_element(By.ID, "favourite").text,
        )
        given = []
        for how in ("click", "click", "key"):
            # the page takes answers once the image asked about is on screen
            wait.until(
                lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true"
            )
            assert browser.execute_script(IMAGE_WIDTH) > 0
            path = browser.find_element(By.ID, "image").get_attribute("data-path")
            label = path.split("/")[1]  # train/<class>/<file>
            if how == "click":
                browser.find_element(By.CSS_SELECTOR, f'button[data-label="{label}"]').click()
            else:
                ActionChains(browser).send_keys(label).perform()  # digits: the class's own key
            given.append((path, label))
            answered(len(given))
            assert saved() == before | set(given)  # at once, not at the end
        assert browser.find_element(By.ID, "progress").text == "3 of 4"
        browser.find_element(By.ID, "undo").click()
        answered(2)
        assert browser.find_element(By.ID, "image").get_attribute("data-path") == given[2][0]
        assert saved() == before | set(given[:2])
    finally:
        browser.quit()
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output
    assert "2 answers written to labels/target.csv" in output
