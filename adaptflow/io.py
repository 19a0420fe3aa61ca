"""Atomic writes, hashing and safe checkpoint loading.

Every output goes to a temporary sibling first and is renamed into place, so an interrupted
stage never leaves a file that DVC or a later stage could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adaptflow.errors import AdaptflowError

_CHUNK = 1 << 20
# Suffix of every temporary output: distinctive, so a rerun can sweep what a killed one left.
TEMP_SUFFIX = ".adaptflow.tmp"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, keys in a stable order so reruns give identical bytes."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file, with a clear error if it is missing or broken."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdaptflowError(f"{path}: missing; run the stage that writes it (dvc repro)") from None
    except json.JSONDecodeError as error:
        raise AdaptflowError(f"{path}: not valid JSON ({error}); rerun its stage") from None


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; swap it in for `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, path: Path) -> None:
    """Put directory `new` at `path`, replacing what was there with two renames."""
    old = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old-{os.getpid()}{TEMP_SUFFIX}")
        os.replace(path, old)
    os.replace(new, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def remove_stale_temporaries(directories: list[Path]) -> list[Path]:
    """Delete the temporaries a killed stage left in `directories`; return what was removed.

    Temporaries are siblings of the output they replace, so only the directories' own entries
    are looked at, never the (possibly huge) trees below them. Safe only while no other stage
    writes there: DVC's repository lock guarantees that.
    """
    removed = []
    for directory in directories:
        if Path(directory).is_dir():
            for stale in sorted(Path(directory).glob(f".*{TEMP_SUFFIX}")):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


def save_torch(path: Path, obj: Any) -> None:
    """torch.save atomically, byte-identical for identical contents.

    Saving through a file object matters: given a path, torch names the archive's inner folder
    after the (random) temporary file, so equal tensors would give different bytes and DVC
    would rerun every downstream stage.
    """
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def load_torch(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """torch.load with weights_only=True: checkpoints can hold tensors and plain data, never code.

    `mmap=True` maps tensors from the file instead of reading them (large decoded caches).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise AdaptflowError(f"{path}: missing; run the stage that writes it (dvc repro)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise AdaptflowError(
            f"{path}: cannot be loaded as a weights-only checkpoint ({type(error).__name__}); "
            "rerun the stage that writes it"
        ) from None


def fingerprint(*parts: Any) -> str:
    """A stable hash of params-like values and files (Paths are hashed by content)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            digest.update(f"file:{part.as_posix()}:{sha256_file(part)}".encode())
        elif hasattr(part, "model_dump"):
            digest.update(json.dumps(part.model_dump(mode="json"), sort_keys=True).encode())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()
