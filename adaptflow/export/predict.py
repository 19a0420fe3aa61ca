"""Classifying image files with an exported model: what `adaptflow predict` runs.

The ONNX file is enough: its metadata names the classes in output order and records how images
were decoded. Files are decoded by the pipeline's own `load_image` (the code that built the
cache evaluate scored), so predict sees exactly the pixels evaluate saw; a model whose recorded
preprocessing differs from what this version does, or whose graph takes other images than its
metadata says, is refused rather than fed differently. FIFOs, sockets and devices among the
inputs are listed as unreadable without being opened (reading a FIFO blocks until a writer comes).
"""

from __future__ import annotations

import csv
import glob
import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import NotARegularFile, read_regular_file, special_file_kind
from adaptflow.core.params import ValidateParams
from adaptflow.data.images import DECODING, IMAGE_EXTENSIONS, ImageError, load_image
from adaptflow.export.onnx import CLASSES_KEY, INPUT_NAME, OUTPUT_NAME, PREPROCESSING_KEY, session

# the decompression-bomb guard of the validate stage, applied to the files predict reads
MAX_PIXELS = ValidateParams.model_fields["max_pixels"].default
DECODE_THREADS = 4


@dataclass(frozen=True)
class OnnxClassifier:
    """An exported model and what its metadata says about feeding it."""

    path: Path
    runtime: Any  # onnxruntime.InferenceSession
    classes: list[str]  # in output order
    channels: int
    size: int

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax over classes for uint8 images (N, C, size, size)."""
        logits = self.runtime.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32) / 255})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


REEXPORT = "re-export it with `dvc repro export`"


def _metadata(path: Path, runtime: Any) -> tuple[list[str], dict[str, Any]]:
    """Class names and preprocessing recipe from the file, or one error saying how to fix it."""
    props = runtime.get_modelmeta().custom_metadata_map
    if CLASSES_KEY not in props or PREPROCESSING_KEY not in props:
        raise AdaptflowError(
            f"{path}: has no adaptflow class names or preprocessing in its metadata; export it "
            "again with this version (dvc repro export)"
        )
    try:
        classes, recipe = json.loads(props[CLASSES_KEY]), json.loads(props[PREPROCESSING_KEY])
    except ValueError:
        raise AdaptflowError(f"{path}: its adaptflow metadata is not JSON; {REEXPORT}") from None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise AdaptflowError(f"{path}: its metadata names no classes; {REEXPORT}")
    size = recipe.get("size") if isinstance(recipe, dict) else None
    if not isinstance(size, int) or size < 1:
        raise AdaptflowError(f"{path}: its metadata records no image size; {REEXPORT}")
    return classes, recipe


def _graph_mismatch(runtime: Any, classes: list[str], channels: int, size: int) -> str | None:
    """How the graph's input and output disagree with the metadata, or None when they agree.

    Only static dimensions are compared: a dynamic one (the batch) takes any size.
    """
    inputs = {node.name: node for node in runtime.get_inputs()}
    outputs = {node.name: node for node in runtime.get_outputs()}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        return (
            f"its graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
            f"not {INPUT_NAME!r} and {OUTPUT_NAME!r}"
        )
    image, logits = inputs[INPUT_NAME], outputs[OUTPUT_NAME]
    if image.type != "tensor(float)" or len(image.shape) != 4:
        return f"its graph takes {image.type} of shape {image.shape}, not float (batch, C, H, W)"
    batch, graph_channels, height, width = (d if isinstance(d, int) else None for d in image.shape)
    if graph_channels not in (None, channels):
        return (
            f"its metadata says {channels}-channel images but its graph takes "
            f"{graph_channels}-channel ones"
        )
    if height not in (None, size) or width not in (None, size):
        return (
            f"its metadata says {size}x{size} images but its graph takes "
            f"{height or '?'}x{width or '?'}"
        )
    if batch is not None:
        return f"its graph takes batches of exactly {batch} images, not any number"
    scored = logits.shape[-1] if len(logits.shape) == 2 else None
    if isinstance(scored, int) and scored != len(classes):
        return f"its metadata names {len(classes)} classes but its graph scores {scored}"
    return None


def load_model(path: Path, threads: int | None = None) -> OnnxClassifier:
    """Open an exported model; its preprocessing must be the one this version performs, and its
    graph must take the images its metadata describes."""
    path = Path(path)
    if not path.is_file():
        raise AdaptflowError(f"{path}: no such model file; run the pipeline (dvc repro) or pass -m")
    try:
        runtime = session(path, threads)
    except Exception as error:  # noqa: BLE001 - any load failure means the same to the user
        raise AdaptflowError(f"{path}: not a model onnxruntime can load ({error})") from None
    classes, recipe = _metadata(path, runtime)
    if recipe.get("decoding") != DECODING or recipe.get("channels") not in (1, 3):
        raise AdaptflowError(
            f"{path}: was exported with another preprocessing ({recipe.get('decoding')!r}, "
            f"this version decodes images as {DECODING!r}); use the adaptflow version that "
            "exported it, or export it again with this one"
        )
    channels, size = int(recipe["channels"]), int(recipe["size"])
    mismatch = _graph_mismatch(runtime, classes, channels, size)
    if mismatch is not None:
        raise AdaptflowError(f"{path}: {mismatch}; {REEXPORT}")
    return OnnxClassifier(path, runtime, classes, channels, size)


@dataclass(frozen=True)
class ImageFile:
    """One input file and, when it sits in an ImageFolder class folder, its true class."""

    path: Path
    label: str | None = None


def _listed(path: Path) -> bool:
    """A file a folder or glob contributes: a regular one, or a special one (reported, unread)."""
    return path.is_file() or special_file_kind(path) is not None


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and _listed(p)
    )


def _labeled(folder: Path, files: list[Path], classes: list[str]) -> list[ImageFile]:
    """Files of a folder, labeled by class folder when every file sits in one (ImageFolder)."""
    relative = [f.relative_to(folder).parts for f in files]
    if files and all(len(parts) >= 2 and parts[0] in classes for parts in relative):
        return [ImageFile(f, parts[0]) for f, parts in zip(files, relative, strict=True)]
    return [ImageFile(f) for f in files]


def find_images(inputs: list[str], classes: list[str]) -> list[ImageFile]:
    """Files named by the inputs: files, folders (searched recursively) or glob patterns.

    A folder whose images all sit in subfolders named like the model's classes (ImageFolder
    layout, e.g. a test split) labels them; anything else is unlabeled.
    """
    found: dict[Path, ImageFile] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = _labeled(path, _images_under(path), classes)
        elif path.exists() or path.is_symlink():
            images = [ImageFile(path)]  # named explicitly: read even with an unusual suffix
        else:
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            images = [ImageFile(m) for m in matches if _listed(m)]
            for folder in (m for m in matches if m.is_dir()):
                images += _labeled(folder, _images_under(folder), classes)
        if not images:
            raise AdaptflowError(
                f"{item}: no image files there (a file, a folder or a glob pattern such as "
                f"'photos/*.jpg'; image suffixes: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        for image in images:  # once each, with its class when any input names it
            if image.path not in found or found[image.path].label is None:
                found[image.path] = image
    return list(found.values())


@dataclass
class Prediction:
    """What the model says about one file (or why the file could not be read)."""

    path: str
    label: str | None = None
    predicted: str | None = None
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def decode_file(file: Path, model: OnnxClassifier) -> np.ndarray | str:
    """The file's pixels as the pipeline decodes them, or why it cannot be read."""
    try:
        return load_image(read_regular_file(file), model.channels, model.size, MAX_PIXELS)
    except NotARegularFile as error:  # a FIFO would block, a device never end
        return f"{error.strerror}; skipped without opening it"
    except ImageError as error:
        return str(error)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def _predict_batch(
    model: OnnxClassifier, batch: list[ImageFile], decoded: list[np.ndarray | str], top_k: int
) -> list[Prediction]:
    readable = [i for i, pixels in enumerate(decoded) if not isinstance(pixels, str)]
    results = [
        Prediction(str(image.path), image.label, error=pixels if isinstance(pixels, str) else None)
        for image, pixels in zip(batch, decoded, strict=True)
    ]
    if readable:
        probabilities = model.probabilities(np.stack([decoded[i] for i in readable]))
        best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        for row, i in enumerate(readable):
            ranked = [(model.classes[c], float(probabilities[row, c])) for c in best[row]]
            results[i].predicted, results[i].confidence = ranked[0]
            results[i].top_k = ranked
    return results


def predict_files(
    model: OnnxClassifier,
    images: list[ImageFile],
    batch_size: int,
    top_k: int,
    on_batch: Callable[[int], None] = lambda n: None,
) -> Iterator[Prediction]:
    """Predictions in input order, a batch at a time; unreadable files are reported, not fatal."""
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            decoded = list(pool.map(lambda image: decode_file(image.path, model), batch))
            yield from _predict_batch(model, batch, decoded, top_k)
            on_batch(len(batch))


@dataclass(frozen=True)
class Summary:
    images: int
    unreadable: list[Prediction]
    labeled: int  # readable files with a true class from their class folder
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labeled if self.labeled else None


def summarise(predictions: list[Prediction]) -> Summary:
    """Counts, the unreadable files, and accuracy over the files whose class folder is known."""
    labeled = [p for p in predictions if p.label is not None and p.error is None]
    return Summary(
        images=len(predictions),
        unreadable=[p for p in predictions if p.error is not None],
        labeled=len(labeled),
        correct=sum(p.predicted == p.label for p in labeled),
    )


FORMATS = ("csv", "json")
CSV_COLUMNS = ["path", "predicted", "confidence", "top_k", "label", "error"]


def _csv(predictions: list[Prediction]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for p in predictions:
        writer.writerow(
            {
                "path": p.path,
                "predicted": p.predicted or "",
                "confidence": "" if p.confidence is None else f"{p.confidence:.4f}",
                "top_k": " ".join(f"{name}:{prob:.4f}" for name, prob in p.top_k),
                "label": p.label or "",
                "error": p.error or "",
            }
        )
    return out.getvalue()


def _json(predictions: list[Prediction], summary: Summary, model: OnnxClassifier) -> str:
    document = {
        "model": str(model.path),
        "images": summary.images,
        "unreadable": len(summary.unreadable),
        "accuracy": summary.accuracy,
        "labeled": summary.labeled,
        "predictions": [
            {
                "path": p.path,
                "predicted": p.predicted,
                "confidence": p.confidence,
                "top_k": [{"class": name, "probability": prob} for name, prob in p.top_k],
                "label": p.label,
                "error": p.error,
            }
            for p in predictions
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def render(predictions: list[Prediction], summary: Summary, model: OnnxClassifier, fmt: str) -> str:
    """The predictions as CSV (one row per file) or as one JSON document with the summary."""
    return _csv(predictions) if fmt == "csv" else _json(predictions, summary, model)
