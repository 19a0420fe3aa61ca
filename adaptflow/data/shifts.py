"""A suite of domain shifts built only from data that installed packages ship, as ImageFolder trees.

Each shift is a labeled source domain and a target domain, written like the demo (see
`adaptflow.data.demo`) to `<root>/source` and `<root>/target`, deterministically for a seed:

  demo       MNIST -> UCI digits (the embedded demo)
  mnist_m    MNIST -> MNIST-M-like: each digit blended with a colour patch cut from
             scikit-learn's sample photos (|patch - digit|, as MNIST-M was made), RGB
  corrupted  MNIST -> corrupted MNIST: each target digit gets one of three corruptions of
             different kinds (blur + Gaussian noise, strong rotation, thick strokes + speckles)
  partial    MNIST -> UCI digits of classes 0-4 only (a partial label set: the target holds a
             subset of the source classes)

For `mnist_m` and `corrupted` the source and target are disjoint halves of MNIST.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.model_selection import train_test_split

from adaptflow.data.demo import load_mnist, load_uci_digits, write_image_folder

TEST_FRACTION = 0.25
PARTIAL_CLASSES = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Domain:
    images: np.ndarray  # uint8 (N, H, W) grey or (N, H, W, 3) RGB
    labels: np.ndarray


@dataclass(frozen=True)
class Shift:
    source: Domain
    target: Domain
    channels: int  # what the model reads: 3 when either domain is RGB
    summary: str


def _halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, class-stratified halves of a labeled set."""
    indices = np.arange(len(labels))
    first, second = train_test_split(indices, test_size=0.5, stratify=labels, random_state=seed)
    return np.sort(first), np.sort(second)


def colour_blend(digits: np.ndarray, photos: list[np.ndarray], seed: int) -> np.ndarray:
    """MNIST-M's recipe: |patch - digit| per channel, a random patch of a random photo each."""
    rng = np.random.default_rng(seed)
    count, side = digits.shape[0], digits.shape[1]
    out = np.empty((count, side, side, 3), dtype=np.uint8)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - side + 1)
        left = rng.integers(photo.shape[1] - side + 1)
        patch = photo[top : top + side, left : left + side].astype(np.int16)
        out[i] = np.abs(patch - digits[i].astype(np.int16)[..., None]).astype(np.uint8)
    return out


def _blur_and_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blurred = ndimage.gaussian_filter(image, sigma=rng.uniform(1.0, 1.5))
    return blurred + rng.normal(0.0, 0.25 * 255, image.shape)


def _rotate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(45.0, 70.0) * rng.choice([-1.0, 1.0])
    return ndimage.rotate(image, angle, reshape=False, order=1)


def _thicken_and_speckle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    thick = ndimage.grey_dilation(image, size=(3, 3))
    speckles = rng.random(image.shape) < 0.08
    return np.where(speckles, 255.0 - thick, thick)


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "blur_noise": _blur_and_noise,
    "rotation": _rotate,
    "thick_speckle": _thicken_and_speckle,
}


def corrupt(digits: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each digit with one corruption drawn at random; returns images and the corruption index."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(len(CORRUPTIONS), size=len(digits))
    functions = list(CORRUPTIONS.values())
    out = np.empty_like(digits)
    for i, kind in enumerate(kinds):
        image = functions[kind](digits[i].astype(np.float64), rng)
        out[i] = np.clip(image, 0, 255).round().astype(np.uint8)
    return out, kinds


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def demo_shift(seed: int) -> Shift:
    mnist, digits = Domain(*load_mnist()), Domain(*load_uci_digits())
    return Shift(mnist, digits, 1, "MNIST -> UCI digits (the demo)")


def mnist_m_shift(seed: int) -> Shift:
    images, labels = load_mnist()
    source, target = _halves(labels, seed)
    blended = colour_blend(images[target], _photos(), seed)
    return Shift(
        Domain(images[source], labels[source]),
        Domain(blended, labels[target]),
        3,
        "MNIST (grey) -> MNIST-M-like (digits blended with photo patches, RGB)",
    )


def corrupted_shift(seed: int) -> Shift:
    images, labels = load_mnist()
    source, target = _halves(labels, seed)
    corrupted, _ = corrupt(images[target], seed)
    return Shift(
        Domain(images[source], labels[source]),
        Domain(corrupted, labels[target]),
        1,
        "MNIST -> corrupted MNIST (blur + noise | rotation 45-70 deg | thick strokes + speckles)",
    )


def partial_shift(seed: int) -> Shift:
    mnist, (digits, digit_labels) = Domain(*load_mnist()), load_uci_digits()
    keep = np.isin(digit_labels, PARTIAL_CLASSES)
    return Shift(
        mnist,
        Domain(digits[keep], digit_labels[keep]),
        1,
        f"MNIST (10 classes) -> UCI digits of classes {PARTIAL_CLASSES[0]}-{PARTIAL_CLASSES[-1]}",
    )


SHIFTS: dict[str, Callable[[int], Shift]] = {
    "demo": demo_shift,
    "mnist_m": mnist_m_shift,
    "corrupted": corrupted_shift,
    "partial": partial_shift,
}


def write_shift(name: str, root: Path, seed: int = 0) -> Shift:
    """Write shift `name` as ImageFolder trees `<root>/source` and `<root>/target`."""
    shift = SHIFTS[name](seed)
    for domain, data in (("source", shift.source), ("target", shift.target)):
        write_image_folder(root / domain, data.images, data.labels, TEST_FRACTION, seed)
    return shift
