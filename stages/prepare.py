"""Stage prepare: decode each split once into uint8 tensors at the model's geometry."""

import logging

from adaptflow import paths
from adaptflow.cli import run_entry_point
from adaptflow.data.cache import (
    CACHE_FILES,
    UNLABELED,
    CacheSpec,
    build_split,
    source_classes,
    split_rows,
)
from adaptflow.data.manifest import read_manifest
from adaptflow.io import save_torch
from adaptflow.params import load_params


def main() -> None:
    params = load_params()
    manifest = read_manifest(paths.MANIFEST)
    spec = CacheSpec(
        image_size=params.data.image_size,
        channels=params.data.channels,
        max_pixels=params.validate.max_pixels,
        source_val_fraction=params.data.source_val_fraction,
        target_labeled_per_class=params.adapt.target_labeled_per_class,
        seed=params.data.seed,
    )
    classes = source_classes(manifest)
    for name, rows in split_rows(manifest, spec).items():
        payload = build_split(rows, classes, spec, labeled=name not in UNLABELED)
        save_torch(CACHE_FILES[name], payload)
        logging.getLogger("prepare").info("%s: %d images", name, len(rows))


if __name__ == "__main__":
    run_entry_point(main)
