"""The three Prefect paths of docs/running.md, against a real Prefect server and real processes.

- scheduled deployments: `prefect deploy --all` of prefect.yaml, a process worker, the nightly
  cron's scheduled runs, a triggered run that completes, its artifacts read back;
- `make serve`: its own deployment name, its own schedule, the work-pool deployment untouched;
- one-off runs (`make flow`): an ephemeral Prefect whatever the profile says, and nothing left
  running after SIGTERM or Ctrl-C; a rerun resumes.

The flows run tiny DVC projects (tests/helpers/tiny_project.py): what is tested is the
orchestration.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.prefect_server import PREFECT, read_artifacts, stop, wait_for_flow_run
from tests.helpers.tiny_project import make_tiny_project

pytestmark = pytest.mark.e2e
FLOW = "adaptflow-pipeline"
NIGHTLY, SERVED = f"{FLOW}/adaptflow-nightly", f"{FLOW}/adaptflow-served"
POOL = "adaptflow-local"


def deployment(server, name: str):
    from prefect.client.orchestration import get_client

    with server.settings(), get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def scheduled_runs(server, deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with server.settings(), get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)
    return result


@pytest.fixture(scope="module")
def server(prefect_server):
    return prefect_server


@pytest.fixture(scope="module")
def project_files(tmp_path_factory) -> Path:
    """What `prefect deploy` reads: prefect.yaml and the flow, as in a checkout."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copy(ROOT / "prefect.yaml", root / "prefect.yaml")
    shutil.copytree(ROOT / "flows", root / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def deployed(server, project_files):
    """The documented commands (make deploy): a process work pool and `prefect deploy --all`."""
    server.cli("work-pool", "create", POOL, "--type", "process")
    output = server.cli("--no-prompt", "deploy", "--all", cwd=project_files)
    assert "Traceback" not in output, output
    return deployment(server, NIGHTLY)


def test_the_nightly_deployment_schedules_runs_and_a_triggered_run_completes_with_artifacts(
    server, deployed, tmp_path
):
    assert deployed.work_pool_name == POOL and deployed.schedules[0].schedule.cron == "0 2 * * *"
    runs = wait_for(lambda: scheduled_runs(server, deployed.id), 90, "the scheduler")
    assert all(run.expected_start_time.hour == 2 for run in runs)
    assert "SCHEDULED" in server.cli("flow-run", "ls")
    assert "adaptflow-nightly" in server.cli("deployment", "ls")

    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", POOL],
        env=server.env(PREFECT_WORKER_QUERY_SECONDS="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        project = make_tiny_project(tmp_path, third="plain")
        output = server.cli("deployment", "run", NIGHTLY, "--param", f"root={project}")
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
        run = wait_for_flow_run(server, flow_run_id, timeout=300)
    finally:
        stop(worker)
    assert run.state.type.value == "COMPLETED", run.state
    artifacts = read_artifacts(server, run.id)
    assert [(r["stage"], r["status"]) for r in artifacts["adaptflow-stages"]] == [
        ("first", "ran"),
        ("second", "ran"),
        ("plain", "ran"),
    ]
    assert "| plain | ran |" in artifacts["adaptflow-report"]
    assert (project / "c.txt").read_text() == "HELLOHELLO"
    assert "adaptflow-report" in server.cli("artifact", "ls")


def test_serving_registers_its_own_schedule_and_leaves_the_nightly_deployment_alone(
    server, deployed, project_files
):
    serving = subprocess.Popen(
        [sys.executable, "flows/pipeline.py", "--serve", "--api-url", server.api_url],
        cwd=project_files,
        env=server.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        served = wait_for(lambda: _existing(server, SERVED), 120, "the served deployment")
        assert served.schedules[0].schedule.cron == "0 2 * * *"
        assert wait_for(lambda: scheduled_runs(server, served.id), 90, "the served schedule")
    finally:
        serving.send_signal(signal.SIGTERM)
        serving.wait(60)
        stop(serving)
    nightly = deployment(server, NIGHTLY)
    assert nightly.id == deployed.id and nightly.work_pool_name == POOL
    assert not nightly.paused


def _existing(server, name: str):
    from prefect.exceptions import ObjectNotFound

    try:
        return deployment(server, name)
    except ObjectNotFound:
        return None


def flow_command(project: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "flows/pipeline.py"), "--root", str(project), *args]


def test_a_one_off_run_is_ephemeral_whatever_the_profile_says_unless_a_server_is_named(
    server, tmp_path
):
    home = tmp_path / "home"
    (tmp_path / "project").mkdir()
    project = make_tiny_project(tmp_path / "project", third="plain")
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    dead = "http://127.0.0.1:9/api"  # a profile pointing at a server that is not running
    subprocess.run([PREFECT, "config", "set", f"PREFECT_API_URL={dead}"], env=env, check=True)
    result = subprocess.run(flow_command(project), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "c.txt").is_file()

    before = len(_flow_runs(server))
    named = subprocess.run(
        flow_command(project, "--api-url", server.api_url), env=env, capture_output=True, text=True
    )
    assert named.returncode == 0, named.stdout + named.stderr
    assert len(_flow_runs(server)) == before + 1  # recorded on the server it was pointed at


def _flow_runs(server) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with server.settings(), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW])))


def processes_with(token: str) -> list[int]:
    """Live processes whose environment holds `token` (the flow and all it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if token.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().split()[2] != "Z":  # zombies have ended
                    found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_flow_stops_its_stage_and_server_and_a_rerun_resumes(sig, tmp_path):
    project = make_tiny_project(tmp_path, third="slow")
    token = f"ADAPTFLOW_TEST_TOKEN={uuid.uuid4()}"
    env = {**os.environ, token.split("=")[0]: token.split("=")[1]}
    env.pop("PREFECT_API_URL", None)
    flow = subprocess.Popen(
        flow_command(project),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the test can clean up; the signal goes to the flow alone
    )
    try:
        wait_for(lambda: (project / "slow.pid").exists(), 180, "the slow stage to start")
        assert len(processes_with(token)) >= 3  # the flow, its Prefect server, dvc, the stage
        flow.send_signal(sig)
        assert flow.wait(60) != 0
        wait_for(lambda: not processes_with(token), 30, "every process of the flow to end")
    finally:
        stop(flow)
    rerun = subprocess.run(flow_command(project), env=env, capture_output=True, text=True)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    assert re.search(r"first: skipped", output) and re.search(r"slow: ran", output), output
    assert (project / "c.txt").read_text() == "HELLOHELLO"
