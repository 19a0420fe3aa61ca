"""`adaptflow <command>`: one entry point over what the project does (also `python -m adaptflow`).

    adaptflow predict data/demo/digits/test    classify images with models/model.onnx
    adaptflow results                          the headline figures of every stage
    adaptflow status                           which stages `dvc repro` would run, and why
    adaptflow flow                             the pipeline through Prefect (flows/pipeline.py)
    adaptflow compare dann shot                adaptation methods as DVC experiments, one table
    adaptflow bench throughput                 benchmarks that print figures

`adaptflow <command> --help` explains each. Run them in the project directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from adaptflow import paths
from adaptflow.cli import ERROR_PREFIX
from adaptflow.errors import EXIT_USER_ERROR, AdaptflowError

if TYPE_CHECKING:
    from adaptflow.predict import Summary

UNREADABLE_LISTED = 20  # on stderr; the output file has every one


def report_user_errors(main: Callable[[], None]) -> None:
    """Run a command; a user error becomes one `adaptflow error: ...` line and exit status 2.

    Not adaptflow.cli's stage runner: that one also sweeps the temporaries of interrupted
    stages, which a command run beside a `dvc repro` must never do.
    """
    try:
        main()
    except AdaptflowError as error:
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX} interrupted", file=sys.stderr)
        sys.exit(130)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _predict_parser(prog: str) -> argparse.ArgumentParser:
    from adaptflow.predict import FORMATS

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
    from adaptflow.predict import FORMATS

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

    from adaptflow.io import write_text
    from adaptflow.predict import find_images, load_model, predict_files, render, summarise

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


def _predict(argv: list[str], prog: str) -> None:
    args = _predict_parser(prog).parse_args(argv)
    report_user_errors(lambda: run_predict(args))


def _table_command(argv: list[str], prog: str, description: str, read, title, columns) -> None:
    from adaptflow.results import print_table

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project directory (.)")
    args = parser.parse_args(argv)
    report_user_errors(lambda: print_table(title, columns, read(args.root)))


def _results(argv: list[str], prog: str) -> None:
    from adaptflow.results import headlines

    description = "The headline figures of every stage, from metrics/*.json (`make results`)."
    _table_command(argv, prog, description, headlines, "adaptflow results", ("stage", "headline"))


def _status(argv: list[str], prog: str) -> None:
    from adaptflow.results import stage_status

    description = "Per stage: up to date, or what changed so that `dvc repro` would run it."
    _table_command(argv, prog, description, stage_status, "adaptflow status", ("stage", "status"))


def _flow(argv: list[str], prog: str) -> None:
    script = Path.cwd() / "flows" / "pipeline.py"

    def run() -> None:
        if not script.is_file():
            raise AdaptflowError(f"{script}: missing; run `{prog}` in the project directory")
        sys.exit(subprocess.run([sys.executable, str(script), *argv]).returncode)

    report_user_errors(run)


def _compare(argv: list[str], prog: str) -> None:
    from adaptflow.sweep import main

    main(argv, prog=prog)


def _bench(argv: list[str], prog: str) -> None:
    from adaptflow.bench.__main__ import main

    main(argv, prog=prog)


COMMANDS: dict[str, tuple[Callable[[list[str], str], None], str]] = {
    "predict": (_predict, "classify images with the exported ONNX model: CSV/JSON out"),
    "results": (_results, "the headline figures of every stage, one table"),
    "status": (_status, "which stages `dvc repro` would run, and why"),
    "flow": (_flow, "run the pipeline through Prefect (flows/pipeline.py; --help for --serve)"),
    "compare": (_compare, "every adaptation method as a DVC experiment, one table"),
    "bench": (_bench, "benchmarks that print figures (throughput, rank, predict)"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptflow",
        description="adaptflow: two image folders in, an adapted and honestly evaluated ONNX "
        "model out (a DVC pipeline). These commands use the model and read the results.",
        epilog="`adaptflow <command> --help` explains each command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Dispatch `adaptflow <command> ...`; each command parses (and explains) its own options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv)  # prints the help, or the error for an unknown command
        return
    command, *rest = argv
    COMMANDS[command][0](rest, f"adaptflow {command}")
