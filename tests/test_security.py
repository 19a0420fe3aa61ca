"""Guards on how the code runs things and loads things."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("adaptflow", "stages", "flows", "bench") for p in (ROOT / d).rglob("*.py")]


def occurrences(pattern: str) -> list[str]:
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_shell_commands_built_from_strings():
    assert occurrences(r"shell\s*=\s*True|os\.system\(|os\.popen\(") == []


def test_every_torch_load_is_weights_only():
    loads = occurrences(r"torch\.load\(")
    assert loads and all("weights_only=True" in line for line in loads)


def test_the_documented_prefect_server_listens_on_loopback_only():
    starts = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if "prefect server start" in line
    ]
    assert starts and all("--host 127.0.0.1" in line for line in starts)
