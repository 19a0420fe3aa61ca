"""Stage prepare: decode each split once into uint8 tensors at the model's geometry."""

import logging

from adaptflow.core import paths
from adaptflow.core.params import load_params
from adaptflow.data.cache import CacheSpec, write_cache
from adaptflow.data.manifest import read_manifest
from adaptflow.entry.stage import run_entry_point


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
    for name, count in write_cache(manifest, spec).items():
        logging.getLogger("prepare").info("%s: %d images", name, count)


if __name__ == "__main__":
    run_entry_point(main)
