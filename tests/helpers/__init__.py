"""What the tests share, in one place: toy data and projects (toy), loading stage scripts
(stages), tiny DVC projects for the flow (tiny_project), a real Prefect server
(prefect_server), the data-parallel worker (ddp_worker) and the leak guard (leak_guard)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
