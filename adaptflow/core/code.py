"""The library's own source as data: what a stored result or a passed check was computed by.

A rung state (adapt/rungs.py) or a passed params check (entry/preflight.py) is reused only
while these hashes stay the same, so a fixed bug is never hidden behind an old result.
"""

from __future__ import annotations

from pathlib import Path

from adaptflow.core.io import sha256_file

LIBRARY = Path(__file__).resolve().parents[1]


def library_source_hashes() -> list[tuple[str, str]]:
    """(path, sha256) of every .py file of adaptflow, benchmarks aside, in a stable order."""
    files = sorted(p for p in LIBRARY.rglob("*.py") if "bench" not in p.parts)
    return [(p.relative_to(LIBRARY).as_posix(), sha256_file(p)) for p in files]
