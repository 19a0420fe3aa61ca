"""Tests that mount a small file system (a full disk, a read-only folder) in a private mount
namespace: they need `unshare -m`, which root has (CI runs as root); elsewhere they skip."""

from __future__ import annotations

import subprocess

import pytest


def _mount_namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


needs_mounts = pytest.mark.skipif(
    not _mount_namespaces_work(), reason="needs `unshare -m` (root) to mount a test file system"
)
