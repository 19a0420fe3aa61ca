"""The CUDA tests' device, skips and report.

Tests marked `cuda` run on the GPU and are skipped, with the reason in the `-ra` summary, where
torch sees none. ADAPTFLOW_TEST_DEVICE=cpu runs their bodies on the CPU at a tiny scale (to
prove the test code without a GPU); assertions about GPU-only features then check the CPU's
answer instead (no peak GPU memory, say), and `compile: true` is skipped unless
ADAPTFLOW_TEST_CPU_COMPILE=1 (inductor takes minutes per model on a small CPU).

ADAPTFLOW_GPU_REPORT=<file.json>: per-epoch img/s and peak memory, and the measured
differences, are written there (adaptflow/bench/gpu_check.py reads them); they are printed
either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("ADAPTFLOW_LOG_LEVEL", "WARNING")

import pytest  # noqa: E402
import torch  # noqa: E402

from .toy import CPU_SCALE, GPU_SCALE, Scale  # noqa: E402

DEVICE_VARIABLE = "ADAPTFLOW_TEST_DEVICE"
CPU_COMPILE_VARIABLE = "ADAPTFLOW_TEST_CPU_COMPILE"
REPORT_VARIABLE = "ADAPTFLOW_GPU_REPORT"
RECORDS: list[dict[str, Any]] = []


def chosen_device() -> tuple[torch.device | None, str]:
    """The device the CUDA tests run on, or None and why they are skipped."""
    name = os.environ.get(DEVICE_VARIABLE, "cuda")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        return None, (
            f"no CUDA device: torch {torch.__version__} sees no GPU; "
            f"{DEVICE_VARIABLE}=cpu runs these test bodies on the CPU"
        )
    return device, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    device, reason = chosen_device()
    if device is not None:
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def device() -> torch.device:
    chosen, reason = chosen_device()
    if chosen is None:
        pytest.skip(reason)
    return chosen


@pytest.fixture(scope="session")
def scale(device: torch.device) -> Scale:
    return GPU_SCALE if device.type == "cuda" else CPU_SCALE


@pytest.fixture
def compile_allowed(device: torch.device) -> None:
    if device.type != "cuda" and os.environ.get(CPU_COMPILE_VARIABLE) != "1":
        pytest.skip(
            f"compile: true runs on the CPU only with {CPU_COMPILE_VARIABLE}=1 "
            "(inductor needs minutes per model here)"
        )


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[list[str]]:
    """Deterministic kernels where torch has them; yields a list that receives the ops that
    have none (torch warns about each instead of failing)."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    missing: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield missing
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]
    messages = {str(w.message) for w in caught if "deterministic implementation" in str(w.message)}
    missing += sorted(m.split(" does not have")[0] for m in messages)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """report(**figures): one record for the summary, tagged with the test's name."""

    def add(**figures: Any) -> None:
        RECORDS.append({"test": request.node.name, **figures})

    return add


def epoch_records(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trained epochs' speed and memory, as the summary shows them."""
    return [
        {
            "epoch": record["epoch"],
            "images_per_second": round(record["images_per_second"], 1),
            "peak_memory_mb": record.get("peak_memory_mb"),
        }
        for record in history
        if record["epoch"] > 0
    ]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDS:
        return
    terminalreporter.section("CUDA tests: figures")
    for record in RECORDS:
        terminalreporter.write_line(json.dumps(record, default=str))


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(REPORT_VARIABLE)
    if target:
        device, _ = chosen_device()
        payload = {"device": str(device), "records": RECORDS}
        Path(target).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
