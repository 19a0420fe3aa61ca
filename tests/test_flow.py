"""The Prefect flow and its DVC runner, on a tiny DVC project (three stages, one flaky)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adaptflow.runner import StageFailed, run_stage, stage_order

FLOWS = Path(__file__).resolve().parents[1] / "flows"
PY = sys.executable

WRITE_A = """
import pathlib, sys
text = pathlib.Path('in.txt').read_text()
with open('attempts.log', 'a') as log: log.write('first\\n')
if text.startswith('bad'):
    print('adaptflow error: in.txt: says bad; fix it', file=sys.stderr); sys.exit(2)
pathlib.Path('a.txt').write_text(text.upper())
"""
WRITE_B = "import pathlib; pathlib.Path('b.txt').write_text(pathlib.Path('a.txt').read_text() * 2)"
FLAKY = """
import pathlib, sys
marker = pathlib.Path('crashed-once')
if not marker.exists():
    marker.write_text('x'); raise SystemExit('simulated crash')
pathlib.Path('c.txt').write_text(pathlib.Path('b.txt').read_text())
"""


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "in.txt").write_text("hello")
    for name, code in (("write_a.py", WRITE_A), ("write_b.py", WRITE_B), ("flaky.py", FLAKY)):
        (tmp_path / name).write_text(code)
    stages = {
        "first": {"cmd": f"{PY} write_a.py", "deps": ["in.txt", "write_a.py"], "outs": ["a.txt"]},
        "second": {"cmd": f"{PY} write_b.py", "deps": ["a.txt"], "outs": ["b.txt"]},
        "flaky": {"cmd": f"{PY} flaky.py", "deps": ["b.txt"], "outs": ["c.txt"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (tmp_path / ".gitignore").write_text("attempts.log\ncrashed-once\n")
    git(tmp_path, "init", "-q")
    subprocess.run([PY, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([PY, "-m", "dvc", "config", "core.analytics", "false"], cwd=tmp_path, check=True)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "tiny pipeline")
    return tmp_path


def attempts(root: Path) -> int:
    log = root / "attempts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_stage_order_follows_the_dag(project):
    assert stage_order(project) == ["first", "second", "flaky"]


def test_runner_reports_ran_then_skipped_and_classifies_failures(project):
    assert run_stage(project, "first", on_line=lambda _: None).status == "ran"
    assert run_stage(project, "first", on_line=lambda _: None).status == "skipped"
    run_stage(project, "second", on_line=lambda _: None)
    with pytest.raises(StageFailed) as crash:
        run_stage(project, "flaky", on_line=lambda _: None)
    assert crash.value.transient
    (project / "in.txt").write_text("bad")
    with pytest.raises(StageFailed) as user_error:
        run_stage(project, "first", on_line=lambda _: None)
    assert not user_error.value.transient
    assert user_error.value.message == "in.txt: says bad; fix it"


@pytest.fixture(scope="module")
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def flow_module(monkeypatch):
    """flows/pipeline.py, without retry delays, recording the artifacts it publishes."""
    spec = importlib.util.spec_from_file_location("_adaptflow_flow", FLOWS / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "dvc_stage", module.dvc_stage.with_options(retry_delay_seconds=0))
    module.published = {}
    for name in ("create_table_artifact", "create_markdown_artifact"):
        real = getattr(module, name)

        def spy(real=real, **kwargs):
            module.published[kwargs["key"]] = kwargs
            return real(**kwargs)  # still published to the (test) Prefect server

        monkeypatch.setattr(module, name, spy)
    return module


def test_the_flow_runs_stages_in_order_retries_a_crash_then_skips_everything(
    prefect, flow_module, project
):
    records = flow_module.pipeline(root=str(project))
    assert [(r["stage"], r["status"]) for r in records] == [
        ("first", "ran"),
        ("second", "ran"),
        ("flaky", "ran"),
    ]
    assert (project / "c.txt").read_text() == "HELLOHELLO"  # the flaky stage succeeded on retry
    table = flow_module.published["adaptflow-stages"]["table"]
    assert [r["stage"] for r in table] == ["first", "second", "flaky"]
    assert "| flaky | ran |" in flow_module.published["adaptflow-report"]["markdown"]

    again = flow_module.pipeline(root=str(project))
    assert {r["status"] for r in again} == {"skipped"}
    assert attempts(project) == 1


def test_a_user_error_fails_the_flow_once_with_the_stages_message(prefect, flow_module, project):
    (project / "in.txt").write_text("bad")
    with pytest.raises(StageFailed, match="in.txt: says bad; fix it"):
        flow_module.pipeline(root=str(project))
    assert attempts(project) == 1  # not retried
    [record] = flow_module.published["adaptflow-stages"]["table"]
    assert record == {"stage": "first", "status": "failed", "message": "in.txt: says bad; fix it"}


SCORE = """
import json, pathlib, yaml
adapt = yaml.safe_load(open('params.yaml'))['adapt']
members = adapt['portfolio']['members'] if adapt['method'] == 'auto' else []
pathlib.Path('metrics').mkdir(exist_ok=True)
scores = {'source_only': 0.05, **{m: len(m) / 10 for m in members}}  # label-free, made up
oracle = {name: 1 - score for name, score in scores.items()}  # the opposite order
chosen = max(scores, key=scores.get)
pathlib.Path('metrics/evaluate.json').write_text(json.dumps(
    {'selection': {'candidates': oracle}, 'target_accuracy': oracle[chosen]}))
pathlib.Path('metrics/adapt.json').write_text(json.dumps(
    {'validator': 'mixval', 'chosen': chosen, 'scores': {'mixval': scores},
     'members': {m: {'train_seconds': 0.5, 'warnings': []} for m in members},
     'warnings': ['candidates disagree']}))
"""


@pytest.fixture
def sweep_project(tmp_path: Path) -> Path:
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
    git(tmp_path, "commit", "-qm", "sweep project")
    return tmp_path


def test_the_compare_flow_ranks_methods_by_the_label_free_score(
    prefect, flow_module, sweep_project
):
    rows = flow_module.compare(["adabn", "tent", "coral"], root=str(sweep_project))
    assert [r["method"] for r in rows] == ["source_only", "adabn", "tent", "coral"]
    kept = [r["method"] for r in rows if r["kept"]]
    assert kept == ["adabn"]  # the best label-free score, not the best oracle accuracy
    report = flow_module.published["adaptflow-compare-report"]["markdown"]
    assert report.index("| adabn |") < report.index("| coral |") < report.index("| tent |")
    assert "target accuracy (oracle)" in report and "source_only (no adaptation)" in report
    assert "- candidates disagree" in report
    assert "method: shot" in (sweep_project / "params.yaml").read_text()  # workspace untouched


def test_the_compare_flow_refuses_unknown_methods(prefect, flow_module, sweep_project):
    with pytest.raises(Exception, match="unknown method.*magic"):
        flow_module.compare(["magic"], root=str(sweep_project))


def test_the_flow_report_carries_the_candidate_ranking_when_enabled(flow_module, tmp_path):
    records = [{"stage": "rank", "status": "ran", "seconds": 1.0}]
    (tmp_path / "metrics").mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "metrics/rank.json").write_text('{"enabled": false}')
    (tmp_path / "reports/rank.md").write_text("Ranking is off (rank.enabled: false).\n")
    assert "Ranking is off" not in flow_module._results_markdown(tmp_path, records)
    (tmp_path / "metrics/rank.json").write_text('{"enabled": true}')
    (tmp_path / "reports/rank.md").write_text("# Candidate source models\n\n| r18 | 1 |\n")
    report = flow_module._results_markdown(tmp_path, records)
    assert "## Candidate source models" in report and "| r18 | 1 |" in report
