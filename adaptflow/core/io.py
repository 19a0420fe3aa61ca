"""Atomic writes, hashing and safe checkpoint loading.

Every output goes to a temporary sibling first and is renamed into place, so an interrupted
stage never leaves a file that DVC or a later stage could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from adaptflow.core.errors import AdaptflowError, NotARegularFile

_CHUNK = 1 << 20
log = logging.getLogger(__name__)
# Suffix of every temporary output: distinctive, so a rerun can sweep what a killed one left.
TEMP_SUFFIX = ".adaptflow.tmp"


_SPECIAL_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def special_file_kind(path: Path) -> str | None:
    """What `path` is when it is a FIFO, socket or device (links followed), else None.

    Such a file must never be opened as data: reading a FIFO waits for a writer forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the open that follows says so
    return _SPECIAL_KINDS.get(stat.S_IFMT(mode))


def _not_regular(kind: str, path: Path) -> NotARegularFile:
    return NotARegularFile(errno.EINVAL, f"{kind}, not a regular file", str(path))


@contextlib.contextmanager
def open_regular_file(path: Path) -> Iterator[Any]:
    """Open a regular file for reading in binary; anything else raises NotARegularFile without
    blocking (opened non-blocking, then checked on the open descriptor: no race)."""
    kind = special_file_kind(path)
    if kind is not None:  # a socket cannot even be opened: say what it is first
        raise _not_regular(kind, path)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):  # replaced since the stat above
        os.close(descriptor)
        kind = _SPECIAL_KINDS.get(stat.S_IFMT(mode), "a directory or another kind of file")
        raise _not_regular(kind, path)
    os.set_blocking(descriptor, True)
    with os.fdopen(descriptor, "rb") as handle:
        yield handle


def read_regular_file(path: Path) -> bytes:
    """A regular file's bytes (see open_regular_file)."""
    with open_regular_file(path) as handle:
        return handle.read()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's bytes."""
    digest = hashlib.sha256()
    with open_regular_file(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def utf8_problem(data: bytes) -> str | None:
    """Where `data` stops being UTF-8 (`byte 0xe9 on line 2 is not UTF-8`), or None."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return f"byte 0x{data[error.start]:02x} on line {line} is not UTF-8"
    return None


def decode_utf8(data: bytes, path: Path) -> str:
    """`data` as UTF-8 text; else one line naming the file, the first bad byte and its line."""
    problem = utf8_problem(data)
    if problem:
        raise AdaptflowError(f"{path}: {problem}; save the file as UTF-8")
    return data.decode("utf-8")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _umask()  # read once, at import: os.umask cannot be read without setting it


def _output_mode(directory: bool = False) -> int:
    """The permissions a plain `open` (or `mkdir`) would give under the user's umask."""
    return (0o777 if directory else 0o666) & ~_UMASK


def _fsync(path: Path) -> None:
    """Flush a file's bytes (or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync
            raise
    finally:
        os.close(fd)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _naming_output(error: OSError, path: Path, tmp: Path | None) -> OSError:
    """The same error, naming the output the user knows rather than its temporary."""
    where = error.filename
    if error.errno is None:
        return error
    if where is None:
        where = path
    else:
        name = Path(os.fsdecode(where))
        if tmp is not None and name.is_relative_to(tmp):
            where = path / name.relative_to(tmp)
        elif name.name.startswith(_temporary_prefix(path)) and name.name.endswith(TEMP_SUFFIX):
            where = path
        else:
            return error
    return OSError(error.errno, error.strerror, str(where))  # the errno picks the subclass


def _raise_naming_output(error: OSError, path: Path, tmp: Path | None = None) -> None:
    named = _naming_output(error, path, tmp)
    if named is error:
        raise error
    raise named from error


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The bytes reach the disk (fsync) before the rename and the rename before returning, so a
    power cut leaves the old file or the new one; the file gets the user's umask permissions.
    A system error (disk full, read-only...) names `path`, not the temporary.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=_temporary_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        tmp_path.chmod(_output_mode())
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    except OSError as error:
        _raise_naming_output(error, path)
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_csv(path: Path, frame: Any) -> None:
    """Write a pandas DataFrame as CSV without its index, atomically (same rows, same bytes)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, keys in a stable order so reruns give identical bytes."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path, made_by: str = "the stage that writes it (dvc repro)") -> Any:
    """Read a JSON file, with a clear error if it is missing or broken: (re)run `made_by`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdaptflowError(f"{path}: missing; run {made_by}") from None
    except json.JSONDecodeError as error:
        raise AdaptflowError(f"{path}: not valid JSON ({error}); rerun {made_by}") from None


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; swap it in for `path` only if the block succeeds.

    Everything in it reaches the disk before the swap; it gets the user's umask permissions.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
        )
        yield tmp
        tmp.chmod(_output_mode(directory=True))
        _fsync_tree(tmp)
        replace_dir(tmp, path)
    except OSError as error:
        _raise_naming_output(error, path, tmp)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory below `root` (writers inside may not have).

    On several threads: the file system commits concurrent syncs together (the demo's 6,800
    images: 2.1 s on one thread, about 2.4 times faster on eight)."""
    paths = []
    for directory, _, files in os.walk(root):
        paths += [Path(directory) / name for name in files]
        paths.append(Path(directory))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_fsync, (p for p in paths if not p.is_symlink())))


def _old_name(path: Path) -> Path:
    """Where `replace_dir` parks the previous `path` between its two renames."""
    return path.with_name(f".{path.name}.old-{os.getpid()}{TEMP_SUFFIX}")


_OLD = re.compile(rf"^\.(?P<name>.+)\.old-\d+{re.escape(TEMP_SUFFIX)}$")


def replace_dir(new: Path, path: Path) -> None:
    """Put directory `new` at `path`, replacing what was there with two renames.

    A kill between the renames leaves the previous version parked under `_old_name`: the next
    sweep (`remove_stale_temporaries`) puts it back.
    """
    old = None
    if path.exists() or path.is_symlink():
        old = _old_name(path)
        os.replace(path, old)
    os.replace(new, path)
    _fsync(path.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def _restore_parked(directory: Path) -> list[Path]:
    """Put back previous versions a kill left parked between `replace_dir`'s two renames."""
    restored = []
    for parked in sorted(directory.glob(f".*.old-*{TEMP_SUFFIX}")):
        match = _OLD.match(parked.name)
        original = directory / match["name"] if match else None
        if original is not None and not (original.exists() or original.is_symlink()):
            os.replace(parked, original)
            _fsync(directory)
            restored.append(original)
            log.warning("restored %s, which an interrupted run had set aside", original)
    return restored


def remove_stale_temporaries(directories: list[Path]) -> list[Path]:
    """Delete the temporaries a killed stage left in `directories`; return what was removed.

    A previous output a kill left set aside (between the two renames of `replace_dir`) is put
    back first, not deleted. Temporaries are siblings of the output they replace, so only the
    directories' own entries are looked at, never the (possibly huge) trees below them. Safe
    only while no other stage writes there: DVC's repository lock guarantees that.
    """
    removed = []
    for directory in directories:
        if Path(directory).is_dir():
            _restore_parked(Path(directory))
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
        try:
            torch.save(obj, handle)
        except RuntimeError as error:  # torch's archive writer hides the disk's own error
            cause = error.__context__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, cause.strerror, cause.filename) from error
            raise


REWRITE = "rerun the stage that writes it (dvc repro)"


def load_torch(
    path: Path, map_location: Any = "cpu", mmap: bool = False, fix: str = REWRITE
) -> Any:
    """torch.load with weights_only=True: checkpoints can hold tensors and plain data, never code.

    `mmap=True` maps tensors from the file instead of reading them (large decoded caches).
    `fix` tells the user what to do about a missing or unloadable file: for a pipeline output,
    rerun its stage; for a file the user supplies, what the file should be.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise AdaptflowError(f"{path}: missing; {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise AdaptflowError(
            f"{path}: cannot be loaded as a weights-only checkpoint ({type(error).__name__}); {fix}"
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
