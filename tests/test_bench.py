"""The benchmarks run and print their figures (tiny settings; figures are not checked here)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("method", ["source_only", "dann"])
def test_the_throughput_benchmark_prints_both_loops_and_their_ratio(method):
    result = subprocess.run(
        [sys.executable, "-m", "adaptflow.bench", "throughput", "--method", method]
        + ["--batch", "8", "--steps", "3", "--warmup", "1", "--repeats", "1", "--device", "cpu"],
        capture_output=True,
        text=True,
        check=True,
    )
    engine = float(re.search(r"adaptflow loop : +([\d.]+) img/s", result.stdout).group(1))
    plain = float(re.search(r"plain PyTorch  : +([\d.]+) img/s", result.stdout).group(1))
    ratio = float(re.search(r"ratio +: +([\d.]+)", result.stdout).group(1))
    assert engine > 0 and plain > 0
    assert ratio == pytest.approx(engine / plain, rel=1e-2)
    assert f"method {method}" in result.stdout and "device: CPU" in result.stdout
