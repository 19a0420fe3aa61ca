"""The decoded cache: each split decoded once into uint8 tensors at the model's geometry.

Splits written by the `prepare` stage (paths in adaptflow/core/paths.py):
  source_train, source_val   labeled; source_val is carved from source train for selection
  source_test                labeled
  target_train               images only: no labels, no file paths (paths name the class)
  target_labeled             k labeled images per class carved from target train (k may be 0)
  target_test                labeled; read by evaluate and export only

The unlabeled target pool is ordered by content hash, never by path or class, so renaming or
scrambling the target class folders leaves it byte-identical.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import read_regular_file, save_torch, sha256_bytes
from adaptflow.data.images import ImageError, load_image
from adaptflow.data.manifest import source_classes


@dataclass(frozen=True)
class CacheSpec:
    image_size: int
    channels: int
    max_pixels: int
    source_val_fraction: float
    target_labeled_per_class: int
    seed: int


def _shuffled(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Rows in a seeded order that depends only on file contents."""
    rows = rows.sort_values(["sha256", "path"], kind="stable")
    order = np.random.default_rng(seed).permutation(len(rows))
    return rows.iloc[order]


def _take_per_class(rows: pd.DataFrame, count_of, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (taken, rest), taking `count_of(n)` rows of each class."""
    taken, rest = [], []
    for _, group in rows.groupby("label", sort=True):
        group = _shuffled(group, seed)
        k = count_of(len(group))
        taken.append(group.iloc[:k])
        rest.append(group.iloc[k:])
    return pd.concat(taken), pd.concat(rest)


def _val_count(fraction: float):
    def count(n: int) -> int:
        return min(n - 1, max(1, round(n * fraction))) if n > 1 else 0

    return count


def split_rows(manifest: pd.DataFrame, spec: CacheSpec) -> dict[str, pd.DataFrame]:
    """Assign readable manifest rows to the six cache splits."""
    rows = manifest[manifest["readable"]]

    def part(domain: str, split: str) -> pd.DataFrame:
        return rows[(rows["domain"] == domain) & (rows["split"] == split)]

    source_val, source_train = _take_per_class(
        part("source", "train"), _val_count(spec.source_val_fraction), spec.seed
    )
    target_train = part("target", "train")
    k = spec.target_labeled_per_class
    target_labeled = target_train.iloc[:0]
    if k:
        labeled = target_train[target_train["label"] != ""]
        short = labeled.groupby("label").size().loc[lambda n: n < k]
        if len(labeled) == 0 or len(short):
            raise AdaptflowError(
                f"adapt.target_labeled_per_class={k}: the target train split needs {k} labeled "
                f"images per class (short: {', '.join(short.index) or 'all classes'}); "
                "lower it or add labeled target images"
            )
        target_labeled, _ = _take_per_class(labeled, lambda n: k, spec.seed)
        target_train = target_train[~target_train["path"].isin(target_labeled["path"])]
        if target_train.empty:  # every method adapts on unlabeled target images
            raise AdaptflowError(
                f"adapt.target_labeled_per_class={k} takes every target train image, leaving "
                f"none unlabeled to adapt on; set it to at most {k - 1}, or add unlabeled "
                "target images"
            )
    return {
        "source_train": source_train.sort_values("path"),
        "source_val": source_val.sort_values("path"),
        "source_test": part("source", "test"),
        "target_train": target_train.sort_values(["sha256", "path"]),
        "target_labeled": target_labeled.sort_values("path"),
        "target_test": part("target", "test"),
    }


CHANGED_SINCE_VALIDATE = "rerun `dvc repro` so that validate checks the data again"


def read_validated(path: str, sha256: str, spec: CacheSpec) -> np.ndarray:
    """Decode one manifest file, refusing it if its bytes changed since validate hashed them."""
    try:
        data = read_regular_file(Path(path))
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise AdaptflowError(
            f"{path}: cannot be read ({reason}) since validate listed it; {CHANGED_SINCE_VALIDATE}"
        ) from None
    if sha256_bytes(data) != sha256:
        raise AdaptflowError(f"{path}: changed since validate checked it; {CHANGED_SINCE_VALIDATE}")
    try:
        return load_image(data, spec.channels, spec.image_size, spec.max_pixels)
    except ImageError as error:  # validate decoded these very bytes: only settings differ
        raise AdaptflowError(f"{path}: {error}; {CHANGED_SINCE_VALIDATE}") from None


def decode(rows: pd.DataFrame, spec: CacheSpec) -> torch.Tensor:
    """Decode the rows' files into one uint8 tensor (N, C, size, size), in parallel threads."""
    shape = (spec.channels, spec.image_size, spec.image_size)
    if rows.empty:
        return torch.empty((0, *shape), dtype=torch.uint8)
    files = zip(rows["path"], rows["sha256"], strict=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = pool.map(lambda file: read_validated(*file, spec), files)
        arrays = list(tqdm(arrays, total=len(rows), desc="decode", disable=None))
    return torch.from_numpy(np.stack(arrays))


def build_split(rows: pd.DataFrame, classes: list[str], spec: CacheSpec, labeled: bool) -> dict:
    """The payload saved for one split; unlabeled splits carry images and hashes only."""
    payload = {
        "images": decode(rows, spec),
        "sha256": rows["sha256"].tolist(),
        "classes": classes,
    }
    if labeled:
        index = {name: i for i, name in enumerate(classes)}
        payload["labels"] = torch.tensor(
            [index[label] for label in rows["label"]], dtype=torch.long
        )
    return payload


CACHE_FILES = {
    "source_train": paths.SOURCE_TRAIN,
    "source_val": paths.SOURCE_VAL,
    "source_test": paths.SOURCE_TEST,
    "target_train": paths.TARGET_TRAIN,
    "target_labeled": paths.TARGET_LABELED,
    "target_test": paths.TARGET_TEST,
}
UNLABELED = frozenset({"target_train"})


def write_cache(manifest: pd.DataFrame, spec: CacheSpec) -> dict[str, int]:
    """Decode every split of the manifest and save it at its cache path; images per split."""
    classes = source_classes(manifest)
    counts = {}
    for name, rows in split_rows(manifest, spec).items():
        payload = build_split(rows, classes, spec, labeled=name not in UNLABELED)
        save_torch(CACHE_FILES[name], payload)
        counts[name] = len(rows)
    return counts
