"""A real Prefect server for the tests (127.0.0.1, a free port, a temporary PREFECT_HOME), and
what the tests read back from it through Prefect's own client: flow runs and artifacts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PREFECT = str(Path(sys.executable).parent / "prefect")
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path
    process: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client of this server (CLI commands, workers, flows)."""
        return {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COLUMNS": "200",  # CLI tables untruncated
            **extra,
        }

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> str:
        """`prefect <args>` against this server; its output, or a failure showing it."""
        result = subprocess.run(
            [PREFECT, *args],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, (
            f"prefect {' '.join(args)} exited {result.returncode}:\n{output}"
        )
        return output

    def settings(self):
        """Prefect settings for in-process clients and flows of this server."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api_url})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and everything it started."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def start_server(home: Path) -> PrefectServer:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # schedule runs promptly
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 - the server outlives this function
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = PrefectServer(f"http://127.0.0.1:{port}/api", home, process)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise AssertionError(
                f"prefect server did not start:\n{(home / 'server.log').read_text()}"
            )
        time.sleep(0.5)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """One real Prefect server for the session, stopped (by its PID's group) at the end."""
    server = start_server(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield server
    finally:
        from prefect.logging.handlers import APILogWorker

        with server.settings():
            APILogWorker.drain_all(timeout=5)  # in-process flows' logs, while the server listens
        stop(server.process)


def wait_for_flow_run(server: PrefectServer, flow_run_id: str, timeout: float = 300) -> Any:
    """The flow run once it reaches a final state."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with server.settings(), get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.type.value in FINAL_STATES:
                return run
            assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state}"
            time.sleep(1)


def read_artifacts(server: PrefectServer, flow_run_id: Any) -> dict[str, Any]:
    """A flow run's artifacts by key, read back through the API: tables as lists of rows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with server.settings(), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=only_this_run)
    found = {}
    for artifact in artifacts:
        data = artifact.data
        found[artifact.key] = json.loads(data) if artifact.type == "table" else data
    return found
