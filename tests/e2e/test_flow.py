"""The Prefect flow and its DVC runner, on tiny DVC projects, with a real Prefect server: what
the flow publishes is read back through Prefect's API, as a user or the UI would see it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from adaptflow.orchestration.dvc_runner import (
    StageFailed,
    reproduce_stage,
    stage_groups,
    stage_order,
    stale_reason,
)
from tests.helpers import ROOT
from tests.helpers.prefect_server import read_artifacts
from tests.helpers.tiny_project import PY, attempts, git, make_foreach_project, make_tiny_project

FLOWS = ROOT / "flows"


def quiet(_: str) -> None:
    pass


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_tiny_project(tmp_path)


def test_stage_order_follows_the_dag(project):
    assert stage_order(project) == ["first", "second", "flaky"]


def test_the_dvc_runner_reports_ran_then_skipped_with_the_reason_and_classifies_failures(project):
    first = reproduce_stage(project, "first", on_line=quiet)
    assert first.status == "ran" and "in.txt" in first.reason
    again = reproduce_stage(project, "first", on_line=quiet)
    assert (again.status, again.reason) == ("skipped", "up to date")
    reproduce_stage(project, "second", on_line=quiet)
    with pytest.raises(StageFailed) as crash:
        reproduce_stage(project, "flaky", on_line=quiet)
    assert crash.value.transient
    (project / "in.txt").write_text("bad")
    with pytest.raises(StageFailed) as user_error:
        reproduce_stage(project, "first", on_line=quiet)
    assert not user_error.value.transient
    assert user_error.value.message == "in.txt: says bad; fix it"
    assert stale_reason(project, "first").startswith("changed deps: in.txt (modified)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    )
    return state != "Z"  # a zombie has ended; only its exit status is left


def test_a_stage_over_its_time_limit_is_stopped_with_what_it_started(tmp_path):
    project = make_tiny_project(tmp_path, third="slow")
    for stage in ("first", "second"):
        reproduce_stage(project, stage, on_line=quiet)
    started = time.monotonic()
    with pytest.raises(StageFailed, match="stopped after 3 s") as timeout:
        reproduce_stage(project, "slow", on_line=quiet, timeout_seconds=3)
    assert not timeout.value.transient  # a rerun would only time out again
    assert time.monotonic() - started < 60  # not the stage's 600 s sleep
    assert not alive(int((project / "slow.pid").read_text()))  # the stage, not only dvc, stopped


@pytest.fixture
def flow_module(monkeypatch):
    """flows/pipeline.py, as Prefect loads it, without retry delays."""
    spec = importlib.util.spec_from_file_location("_adaptflow_flow", FLOWS / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "dvc_stage", module.dvc_stage.with_options(retry_delay_seconds=0))
    return module


def run_flow(server, flow, **parameters):
    """Run a flow in-process against the server; its final state."""
    with server.settings():
        return flow(**parameters, return_state=True)


def test_the_flow_runs_stages_in_order_retries_a_crash_then_skips_everything(
    prefect_server, flow_module, project
):
    state = run_flow(prefect_server, flow_module.pipeline, root=str(project))
    assert state.is_completed()
    records = state.result()
    assert [(r["stage"], r["status"]) for r in records] == [
        ("first", "ran"),
        ("second", "ran"),
        ("flaky", "ran"),
    ]
    assert (project / "c.txt").read_text() == "HELLOHELLO"  # the flaky stage succeeded on retry
    published = read_artifacts(prefect_server, state.state_details.flow_run_id)
    table = published["adaptflow-stages"]
    assert [(r["stage"], r["status"]) for r in table] == [
        (r["stage"], r["status"]) for r in records
    ]
    assert "| flaky | ran |" in published["adaptflow-report"]

    again = run_flow(prefect_server, flow_module.pipeline, root=str(project)).result()
    assert {r["status"] for r in again} == {"skipped"}
    assert {r["reason"] for r in again} == {"up to date"}
    assert attempts(project) == 1


def test_a_user_error_fails_the_flow_once_with_the_stages_message(
    prefect_server, flow_module, project
):
    (project / "in.txt").write_text("bad")
    state = run_flow(prefect_server, flow_module.pipeline, root=str(project))
    assert state.is_failed()
    with pytest.raises(StageFailed, match="in.txt: says bad; fix it"):
        state.result()
    assert attempts(project) == 1  # not retried
    [record] = read_artifacts(prefect_server, state.state_details.flow_run_id)["adaptflow-stages"]
    assert record == {"stage": "first", "status": "failed", "message": "in.txt: says bad; fix it"}


def test_a_params_typo_fails_the_flow_before_any_stage_runs(prefect_server, flow_module, project):
    (project / "params.yaml").write_text(
        "data: {source: source, target: target}\nadapt:\n  epocs: 3\n"
    )
    state = run_flow(prefect_server, flow_module.pipeline, root=str(project))
    assert state.is_failed() and attempts(project) == 0
    [record] = read_artifacts(prefect_server, state.state_details.flow_run_id)["adaptflow-stages"]
    assert record["stage"] == "params"
    assert "adapt.epocs: unknown key; did you mean `epochs`?" in record["message"]


def test_independent_members_of_a_foreach_stage_form_one_group(tmp_path):
    project = make_foreach_project(tmp_path)
    groups = stage_groups(project)
    assert ["member@a", "member@b"] in groups
    assert groups[-1] == ["gather"] and [s for g in groups for s in g] == stage_order(project)


def test_the_flow_runs_independent_stages_at_once_and_records_them_in_dvc(
    prefect_server, flow_module, tmp_path
):
    project = make_foreach_project(tmp_path)
    state = run_flow(prefect_server, flow_module.pipeline, root=str(project), stages_at_once=2)
    records = {r["stage"]: r["status"] for r in state.result()}
    assert records["member@a"] == records["member@b"] == records["gather"] == "ran"
    (start_a, end_a), (start_b, end_b) = (
        map(float, (project / f"member_{m}.txt").read_text().split()) for m in ("a", "b")
    )
    assert start_a < end_b and start_b < end_a  # the two members ran at the same time
    again = run_flow(prefect_server, flow_module.pipeline, root=str(project), stages_at_once=2)
    assert {r["status"] for r in again.result()} == {"skipped"}  # dvc.lock recorded them
    status = subprocess.run(
        [PY, "-m", "dvc", "status"], cwd=project, capture_output=True, text=True, check=True
    )
    assert "up to date" in status.stdout


SCORE = """
import json, pathlib, yaml
adapt = yaml.safe_load(open('params.yaml'))['adapt']
members = adapt['portfolio']['members'] if adapt['method'] == 'auto' else []
pathlib.Path('metrics').mkdir(exist_ok=True)
scores = {'source_only': 0.05, **{m: len(m) / 10 for m in members}}  # label-free, made up
oracle = {name: 1 - score for name, score in scores.items()}  # the opposite order
chosen = max(scores, key=scores.get)
pathlib.Path('metrics/evaluate.json').write_text(json.dumps(
    {'selection': {'models': oracle}, 'target_accuracy': oracle[chosen]}))
pathlib.Path('metrics/adapt.json').write_text(json.dumps(
    {'rule': 'mixval', 'chosen': chosen, 'scores': {'mixval': scores},
     'members': {m: {'train_seconds': 0.5, 'warnings': []} for m in members},
     'warnings': ['members disagree']}))
"""


@pytest.fixture
def compare_project(tmp_path: Path) -> Path:
    """A one-stage DVC project whose metrics depend on the portfolio (stands in for ours)."""
    (tmp_path / "score.py").write_text(SCORE)
    params = "data: {source: /data/src, target: /data/tgt}\nadapt:\n  method: shot\n"
    params += "  portfolio: {members: [shot]}\n"
    (tmp_path / "params.yaml").write_text(params)
    stage = {
        "cmd": f"{PY} score.py",
        "deps": ["score.py"],
        "params": ["adapt.method", "adapt.portfolio"],
        "metrics": [
            {"metrics/evaluate.json": {"cache": False}},
            {"metrics/adapt.json": {"cache": False}},
        ],
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"score": stage}}))
    git(tmp_path, "init", "-q")
    subprocess.run([PY, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([PY, "-m", "dvc", "repro", "-q"], cwd=tmp_path, check=True)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "compare project")
    return tmp_path


def test_the_compare_flow_ranks_methods_by_the_label_free_score(
    prefect_server, flow_module, compare_project
):
    state = run_flow(
        prefect_server,
        flow_module.compare,
        methods=["adabn", "tent", "coral"],
        root=str(compare_project),
    )
    rows = state.result()
    assert [r["method"] for r in rows] == ["source_only", "adabn", "tent", "coral"]
    kept = [r["method"] for r in rows if r["kept"]]
    assert kept == ["adabn"]  # the best label-free score, not the best oracle accuracy
    report = read_artifacts(prefect_server, state.state_details.flow_run_id)[
        "adaptflow-compare-report"
    ]
    assert report.index("| adabn |") < report.index("| coral |") < report.index("| tent |")
    assert "target accuracy (oracle)" in report and "source_only (no adaptation)" in report
    assert "- members disagree" in report
    assert "method: shot" in (compare_project / "params.yaml").read_text()  # workspace untouched


def test_the_compare_flow_refuses_unknown_methods(prefect_server, flow_module, compare_project):
    state = run_flow(
        prefect_server, flow_module.compare, methods=["magic"], root=str(compare_project)
    )
    with pytest.raises(Exception, match="unknown method.*magic"):
        state.result()
