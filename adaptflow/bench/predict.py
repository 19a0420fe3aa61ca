"""Prediction throughput on CPU: `adaptflow predict`'s own path over a folder of image files.

Times, for each batch size, (a) the whole path (read and decode the files with the pipeline's
`load_image` in threads, onnxruntime, softmax and top-k) and (b) onnxruntime alone on the
already decoded batch, best of `--repeats` each. Prints img/s and the device.

    python -m adaptflow.bench predict                         # the demo's target test folder
    python -m adaptflow.bench predict --json results/predict.json   # also record the figures
    python -m adaptflow.bench predict --images my_photos --model models/model.onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from adaptflow.bench.common import RunRecord, cpu_name
from adaptflow.core import paths
from adaptflow.export.predict import decode_file, find_images, load_model, predict_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=paths.ONNX_MODEL)
    parser.add_argument("--images", default="data/demo/digits/test", help="file, folder or glob")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")


def _best_rate(count: int, run, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - started))
    return max(rates), rates


def run(args: argparse.Namespace) -> None:
    record = RunRecord(Path.cwd())
    model = load_model(args.model, args.threads)
    images = find_images([args.images], model.classes)
    decoded = [decode_file(image.path, model) for image in images]
    pixels = np.stack([p for p in decoded if not isinstance(p, str)])
    print(
        f"device: {cpu_name()}; onnxruntime threads {args.threads or 'default'}; "
        f"{len(images)} files from {args.images}, {model.channels}x{model.size}x{model.size}; "
        f"best of {args.repeats}"
    )
    batches = [_measure_batch(model, images, pixels, batch, args.repeats) for batch in args.batch]
    if args.json:
        settings = {
            "model": str(args.model),
            "images": str(args.images),
            "files": len(images),
            "input": [model.channels, model.size, model.size],
            "onnxruntime_threads": args.threads,
            "repeats": args.repeats,
        }
        record.write(args.json, {"settings": settings, "batches": batches})


def _measure_batch(model, images: list, pixels: np.ndarray, batch: int, repeats: int) -> dict:
    """Both rates at one batch size (after a warm-up run of each), printed and returned."""

    def whole() -> None:
        list(predict_files(model, images, batch, top_k=3))

    def runtime_only() -> None:
        for start in range(0, len(pixels), batch):
            model.probabilities(pixels[start : start + batch])

    whole(), runtime_only()  # warm-up
    end_to_end, runs = _best_rate(len(images), whole, repeats)
    inference, _ = _best_rate(len(pixels), runtime_only, repeats)
    print(
        f"batch {batch:4d}: predict {end_to_end:9.0f} img/s (runs: "
        f"{', '.join(f'{r:.0f}' for r in runs)})   onnxruntime alone {inference:9.0f} img/s"
    )
    return {
        "batch": batch,
        "predict_images_per_second": end_to_end,
        "predict_runs": runs,
        "onnxruntime_images_per_second": inference,
    }
