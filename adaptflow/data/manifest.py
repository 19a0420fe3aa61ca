"""Scanning two ImageFolder roots into a manifest: one row per image file, with its hash and health.

Layout: `<root>/train/<class>/*` and `<root>/test/<class>/*`. Target images directly under
`<target>/train/` (no class folder) are accepted as unlabeled. Problems with single files
(unreadable, truncated, a symlink leaving the root, ...) become rows with `readable=False`
and a reason, so the validation report can name every bad file at once; problems with the
layout itself (a missing split, no images at all) stop the scan with one clear error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import NotARegularFile, read_regular_file, sha256_bytes, write_csv
from adaptflow.core.params import Params
from adaptflow.data.images import IMAGE_EXTENSIONS, ImageError, inspect_image

SPLITS = ("train", "test")
DOMAINS = ("source", "target")
COLUMNS = [
    "path",
    "domain",
    "split",
    "label",
    "sha256",
    "bytes",
    "width",
    "height",
    "mode",
    "readable",
    "error",
]
SYMLINK_LOOP = "a symlink loop (it leads back to itself); remove or fix the link"
LAYOUT_HINT = "expected <root>/train/<class>/<image> and <root>/test/<class>/<image>"


@dataclass
class Scan:
    """The manifest rows plus the class folders seen (empty ones included)."""

    rows: list[dict] = field(default_factory=list)
    class_folders: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (domain, split, label)

    def manifest(self) -> pd.DataFrame:
        """Rows as a DataFrame in a stable order (same files -> same bytes on disk)."""
        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        frame = frame.sort_values(["domain", "split", "label", "path"], kind="stable")
        return frame.reset_index(drop=True).astype(
            {"width": "Int64", "height": "Int64", "bytes": "Int64", "readable": bool}
        )


@dataclass(frozen=True)
class _Found:
    path: Path
    domain: str
    split: str
    label: str
    problem: str = ""  # set when the entry is refused before reading


def display_path(path: Path) -> str:
    """A path relative to the working directory when inside it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _walk_class_folder(folder: Path, root: Path, domain: str, split: str, label: str):
    """Yield the files under one class folder, recursively, without following directory links."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in sorted(dirnames):
            sub = here / name
            if sub.is_symlink():
                yield _Found(sub, domain, split, label, "a symlinked directory (not followed)")
            elif _is_image_name(name):
                yield _Found(sub, domain, split, label, "a directory named like an image")
        dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
        for name in sorted(filenames):
            if _is_image_name(name):
                yield _check_link(_Found(here / name, domain, split, label), root)


def _check_link(entry: _Found, root: Path) -> _Found:
    """Refuse symlinks that loop or resolve outside the data root."""
    if not entry.path.is_symlink():
        return entry
    try:
        resolved = entry.path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13's word for a symlink loop
        return replace(entry, problem=SYMLINK_LOOP)
    except OSError as error:
        missing = "a symlink to a missing file; remove or fix the link"
        return replace(entry, problem=SYMLINK_LOOP if error.errno == errno.ELOOP else missing)
    if not resolved.is_relative_to(root):
        return replace(entry, problem=f"a symlink to {resolved}, outside the data root {root}")
    return entry


def _found_files(root: Path, domain: str, scan: Scan) -> Iterable[_Found]:
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise AdaptflowError(
                f"data.{domain}: {display_path(split_dir)} is missing; {LAYOUT_HINT}"
            )
        for entry in sorted(split_dir.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and not _is_image_name(entry.name):
                if entry.name.startswith("."):
                    continue
                scan.class_folders.append((domain, split, entry.name))
                yield from _walk_class_folder(entry, root, domain, split, entry.name)
            elif _is_image_name(entry.name):
                if entry.is_dir():
                    yield _Found(entry, domain, split, "", "a directory named like an image")
                elif domain == "target" and split == "train":
                    yield _check_link(_Found(entry, domain, split, ""), root)
                else:
                    yield _Found(
                        entry,
                        domain,
                        split,
                        "",
                        f"outside a class folder; move it into {split}/<class>/",
                    )


def _inspect(entry: _Found, max_pixels: int) -> dict:
    row = {
        "path": display_path(entry.path),
        "domain": entry.domain,
        "split": entry.split,
        "label": entry.label,
        "sha256": "",
        "bytes": None,
        "width": None,
        "height": None,
        "mode": "",
        "readable": False,
        "error": entry.problem,
    }
    if entry.problem:
        return row
    try:
        data = read_regular_file(entry.path)
    except NotARegularFile as error:
        row["error"] = f"{error.strerror}; remove it, or put the image file there"
        return row
    except PermissionError:
        row["error"] = "permission denied; make the file readable"
        return row
    except OSError as error:
        row["error"] = f"cannot be read ({error.strerror or error})"
        return row
    row["sha256"] = sha256_bytes(data)
    row["bytes"] = len(data)
    try:
        info = inspect_image(data, max_pixels)
    except ImageError as error:
        row["error"] = str(error)
        return row
    row.update(width=info.width, height=info.height, mode=info.mode, readable=True)
    return row


def _check_root(domain: str, root: Path) -> Path:
    """The resolved root, which must be an existing directory."""
    path = Path(root)
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise AdaptflowError(
            f"data.{domain}: {root} {problem}; point it at an ImageFolder root ({LAYOUT_HINT})"
        )
    return path.resolve()


def check_roots(source: Path, target: Path) -> tuple[Path, Path]:
    """Resolve both roots; they must exist and be distinct, neither inside the other."""
    src, tgt = _check_root("source", source), _check_root("target", target)
    if src == tgt or src.is_relative_to(tgt) or tgt.is_relative_to(src):
        raise AdaptflowError(
            f"data.source ({source}) and data.target ({target}) overlap; use two separate roots"
        )
    return src, tgt


def check_data_roots(params: Params) -> None:
    """Before the pipeline runs: each data root exists (unless the demo_data stage writes it).

    DVC checks a stage's deps before running it and would only say `No such file or
    directory`; this names the param.
    """
    demo = Path(params.demo.root).resolve()
    for domain in DOMAINS:
        root = Path(getattr(params.data, domain))
        if not root.resolve().is_relative_to(demo):
            _check_root(domain, root)


def scan_domains(source: Path, target: Path, max_pixels: int, workers: int | None = None) -> Scan:
    """Scan both roots into manifest rows; raise AdaptflowError on a broken layout."""
    source_root, target_root = check_roots(source, target)
    scan = Scan()
    found = [
        *_found_files(source_root, "source", scan),
        *_found_files(target_root, "target", scan),
    ]
    if not found:
        raise AdaptflowError(f"data.source/data.target: no images found; {LAYOUT_HINT}")
    for domain in DOMAINS:
        if not any(c.domain == domain for c in found):
            raise AdaptflowError(f"data.{domain}: no images found; {LAYOUT_HINT}")
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = pool.map(lambda c: _inspect(c, max_pixels), found)
        scan.rows = list(tqdm(rows, total=len(found), desc="scan", unit="img", disable=None))
    return scan


def source_classes(manifest: pd.DataFrame) -> list[str]:
    """Class names in ImageFolder order: the sorted class folders of the source train split."""
    train = manifest[(manifest["domain"] == "source") & (manifest["split"] == "train")]
    return sorted(set(train.loc[train["readable"], "label"]) - {""})


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    """Write the manifest CSV atomically."""
    write_csv(path, frame)


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest CSV back with its column types (labels stay strings, '' = unlabeled)."""
    if not Path(path).is_file():
        raise AdaptflowError(f"{path}: missing; run the validate stage (dvc repro validate)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns) != COLUMNS:
        raise AdaptflowError(f"{path}: unexpected columns; rerun the validate stage")
    frame["readable"] = frame["readable"] == "True"
    for column in ("width", "height", "bytes"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return frame
