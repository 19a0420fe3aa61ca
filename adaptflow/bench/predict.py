"""Prediction throughput on CPU: `adaptflow predict`'s own path over a folder of image files.

Times, for each batch size, (a) the whole path (read and decode the files with the pipeline's
`load_image` in threads, onnxruntime, softmax and top-k) and (b) onnxruntime alone on the
already decoded batch, best of `--repeats` each. Prints img/s and the device.

    python -m adaptflow.bench predict                         # the demo's target test folder
    python -m adaptflow.bench predict --images my_photos --model models/model.onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from adaptflow import paths
from adaptflow.bench.common import cpu_name
from adaptflow.predict import decode_file, find_images, load_model, predict_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=paths.ONNX_MODEL)
    parser.add_argument("--images", default="data/demo/digits/test", help="file, folder or glob")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=3)


def _best_rate(count: int, run, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - started))
    return max(rates), rates


def run(args: argparse.Namespace) -> None:
    model = load_model(args.model, args.threads)
    images = find_images([args.images], model.classes)
    decoded = [decode_file(image.path, model) for image in images]
    pixels = np.stack([p for p in decoded if not isinstance(p, str)])
    print(
        f"device: {cpu_name()}; onnxruntime threads {args.threads or 'default'}; "
        f"{len(images)} files from {args.images}, {model.channels}x{model.size}x{model.size}; "
        f"best of {args.repeats}"
    )
    for batch in args.batch:

        def whole(b=batch) -> None:
            list(predict_files(model, images, b, top_k=3))

        def runtime_only(b=batch) -> None:
            for start in range(0, len(pixels), b):
                model.probabilities(pixels[start : start + b])

        whole(), runtime_only()  # warm-up
        end_to_end, runs = _best_rate(len(images), whole, args.repeats)
        inference, _ = _best_rate(len(pixels), runtime_only, args.repeats)
        print(
            f"batch {batch:4d}: predict {end_to_end:9.0f} img/s (runs: "
            f"{', '.join(f'{r:.0f}' for r in runs)})   onnxruntime alone {inference:9.0f} img/s"
        )
