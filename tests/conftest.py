"""Shared fixtures: small synthetic ImageFolder trees, a fresh working directory, a real
Prefect server, and a private Prefect home for the whole run. Helpers live in tests/helpers."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.prefect_server import prefect_server  # noqa: F401 - a session fixture
from tests.helpers.toy import write_image

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("ADAPTFLOW_LOG_LEVEL", "WARNING")


@pytest.fixture
def make_domain() -> Callable[..., Path]:
    """Write `root/{train,test}/<class>/<i>.png` with `counts[split]` images per class."""
    seeds = iter(range(1, 10**6))

    def make(
        root: Path,
        classes: tuple[str, ...] = ("a", "b", "c"),
        counts: dict[str, int] | None = None,
        size: int = 16,
    ) -> Path:
        counts = counts or {"train": 6, "test": 3}
        for split, count in counts.items():
            for label in classes:
                for i in range(count):
                    write_image(root / split / label / f"{i:03d}.png", next(seeds), size)
        return root

    return make


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with the working directory in a fresh temporary project."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Prefect keeps its settings and database under PREFECT_HOME (default ~/.prefect), and a one-off
# flow run records itself there through an ephemeral server: each pytest process (each xdist
# worker) gives the suite's flows, and every process they start, a home of its own, set before
# any test module imports Prefect, so that the tests leave nothing in the user's Prefect database.
# Made here rather than at import: processes the tests start that import this module (the DDP
# workers) would each make a folder that nothing removes.
PREFECT_HOME = pytest.StashKey[str]()


def pytest_configure(config):
    assert "prefect" not in sys.modules, "PREFECT_HOME must be set before Prefect is imported"
    config.stash[PREFECT_HOME] = tempfile.mkdtemp(prefix="adaptflow-tests-prefect-home-")
    os.environ["PREFECT_HOME"] = config.stash[PREFECT_HOME]


def pytest_unconfigure(config):
    shutil.rmtree(config.stash.get(PREFECT_HOME, ""), ignore_errors=True)
