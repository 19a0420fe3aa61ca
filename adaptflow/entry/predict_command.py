"""`adaptflow predict`: classify image files with the exported ONNX model (CSV or JSON out).

The work is adaptflow.export.predict's; this module is the command line around it: options,
a progress bar, the output file or stdout, and a summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError, describe_os_error, exit_on_user_error
from adaptflow.core.io import TEMP_SUFFIX

if TYPE_CHECKING:
    from adaptflow.export.predict import Summary

UNREADABLE_LISTED = 20  # on stderr; the output file has every one


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _threads(text: str) -> int:
    # more threads than CPUs only thrash: 100000 never finished
    value, most = _at_least_one(text), usable_cpus()
    if value > most:
        raise argparse.ArgumentTypeError(
            f"must be at most {most} (the CPUs this process may use), not {value}"
        )
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
    parser.add_argument(
        "--threads", type=_threads, help=f"onnxruntime threads, 1 to {usable_cpus()} (all cores)"
    )
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


@contextlib.contextmanager
def _writing(output: Path) -> Iterator[None]:
    """Any system error while using `output` as one line naming -o and what to do.

    core.errors' advice where it has some (read-only, permission, disk full...), else the
    system's reason: every way an output can be unusable reads the same.
    """
    try:
        yield
    except OSError as error:
        message = describe_os_error(OSError(error.errno, error.strerror, str(output)))
        if message is None:
            message = f"{output}: cannot be written ({error.strerror or error}); pass another -o"
        raise AdaptflowError(f"-o {message}") from None


def check_output(output: Path) -> None:
    """Refuse an -o that cannot be written, before any inference: a folder, a file where a
    folder should be, a read-only or forbidden folder. Missing folders are made when writing."""
    if output.is_dir():
        raise AdaptflowError(f"-o {output}: is a folder; name a .csv or .json file to write")
    folder = next(p for p in output.parents if os.path.lexists(p))  # '.' or '/' at worst
    if not folder.is_dir():
        raise AdaptflowError(f"-o {output}: {folder} is not a folder; pass another -o")
    with _writing(output):  # try it: permissions alone say nothing for root or read-only mounts
        fd, probe = tempfile.mkstemp(prefix=f".{output.name}.", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)


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
    if args.output is not None:
        check_output(args.output)
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
        with _writing(args.output):
            write_text(args.output, text)
    _print_summary(summary, seconds, args.model, args.output)


def predict_command(argv: list[str], prog: str) -> None:
    """`adaptflow predict`: parse its options, then classify; user errors as one line."""
    args = _predict_parser(prog).parse_args(argv)
    exit_on_user_error(lambda: run_predict(args))
