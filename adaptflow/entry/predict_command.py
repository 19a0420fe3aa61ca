"""`adaptflow predict`: classify image files with the exported ONNX model (CSV or JSON out).

The work is adaptflow.export.predict's; this module is the command line around it: options,
a progress bar, the output file or stdout, and a summary on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError, exit_on_user_error

if TYPE_CHECKING:
    from adaptflow.export.predict import Summary

UNREADABLE_LISTED = 20  # on stderr; the output file has every one


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _predict_parser(prog: str) -> argparse.ArgumentParser:
    from adaptflow.export.predict import FORMATS

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Classify images with an exported model. Preprocessing and class names come "
        "from the model file's metadata. Prints CSV (path, predicted, confidence, top_k, label, "
        "error) unless -o is given; a summary (and accuracy, when the images sit in class "
        "folders named like the model's classes) goes to stderr. Unreadable files are listed "
        "with their error; they do not stop the run.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGES",
        help="image files, folders (searched recursively) or glob patterns ('photos/**/*.jpg')",
    )
    parser.add_argument(
        "-m", "--model", type=Path, default=paths.ONNX_MODEL, help="ONNX model (%(default)s)"
    )
    parser.add_argument("-o", "--output", type=Path, help="write to this .csv or .json file")
    parser.add_argument("--format", choices=FORMATS, help="default: the output's suffix, else csv")
    parser.add_argument("-k", "--top-k", type=_at_least_one, default=3, help="(%(default)s)")
    parser.add_argument(
        "-b", "--batch-size", type=_at_least_one, default=64, help="images per run (%(default)s)"
    )
    parser.add_argument("--threads", type=_at_least_one, help="onnxruntime threads (all cores)")
    return parser


def _output_format(args: argparse.Namespace) -> str:
    from adaptflow.export.predict import FORMATS

    if args.format:
        return args.format
    if args.output is None:
        return "csv"
    suffix = args.output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise AdaptflowError(f"-o {args.output}: name a .csv or .json file (or pass --format)")
    return suffix


def _print_summary(summary: Summary, seconds: float, model: Path, output: Path | None) -> None:
    rate = summary.images / seconds if seconds > 0 else float("inf")
    lines = [f"predict: {summary.images} images in {seconds:.2f} s ({rate:,.0f} img/s), {model}"]
    if summary.accuracy is not None:
        lines.append(
            f"accuracy {summary.accuracy:.4f} ({summary.correct} of {summary.labeled} images "
            "in class folders)"
        )
    if summary.unreadable:
        lines.append(f"{len(summary.unreadable)} files could not be read (error column):")
        lines += [f"  {p.path}: {p.error}" for p in summary.unreadable[:UNREADABLE_LISTED]]
        if len(summary.unreadable) > UNREADABLE_LISTED:
            lines.append(f"  ... and {len(summary.unreadable) - UNREADABLE_LISTED} more")
    if output is not None:
        lines.append(f"written to {output}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def run_predict(args: argparse.Namespace) -> None:
    """Predict the inputs; write CSV/JSON to stdout or a file; summary on stderr."""
    from tqdm import tqdm

    from adaptflow.core.io import write_text
    from adaptflow.export.predict import find_images, load_model, predict_files, render, summarise

    fmt = _output_format(args)
    model = load_model(args.model, args.threads)
    images = find_images(args.inputs, model.classes)
    top_k = min(args.top_k, len(model.classes))
    started = time.perf_counter()
    quiet = True if len(images) <= args.batch_size else None  # None: a bar on a terminal only
    with tqdm(total=len(images), unit="img", desc="predict", disable=quiet) as bar:
        predictions = list(predict_files(model, images, args.batch_size, top_k, bar.update))
    seconds = time.perf_counter() - started
    summary = summarise(predictions)
    if len(summary.unreadable) == summary.images:
        first = summary.unreadable[0]
        raise AdaptflowError(
            f"none of the {summary.images} files could be read as an image "
            f"(first: {first.path}: {first.error})"
        )
    text = render(predictions, summary, model, fmt)
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text(args.output, text)
    _print_summary(summary, seconds, args.model, args.output)


def predict_command(argv: list[str], prog: str) -> None:
    """`adaptflow predict`: parse its options, then classify; user errors as one line."""
    args = _predict_parser(prog).parse_args(argv)
    exit_on_user_error(lambda: run_predict(args))
