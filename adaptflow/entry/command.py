"""`adaptflow <command>`: one entry point over what the project does (also `python -m adaptflow`).

    adaptflow check                            check params.yaml as every stage does first
    adaptflow predict data/demo/digits/test    classify images with models/model.onnx
    adaptflow results                          the headline figures of every stage
    adaptflow status                           which stages `dvc repro` would run, and why
    adaptflow flow                             the pipeline through Prefect (flows/pipeline.py)
    adaptflow compare dann shot                adaptation methods as DVC experiments, one table
    adaptflow label --serve                    target images to label, chosen to settle `auto`
    adaptflow bench throughput                 benchmarks that print figures

`adaptflow <command> --help` explains each. Run them in the project directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from adaptflow.core import paths
from adaptflow.core.errors import (
    AdaptflowError,
    exit_on_user_error,
    system_errors_as_user_errors,
)
from adaptflow.entry.predict_command import predict_command


def print_table(title: str, columns: tuple[str, str], rows: list[tuple[str, str]]) -> None:
    """A two-column table as wide as the terminal (rich wraps long cells)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=True, show_lines=False)
    table.add_column(columns[0], style="bold", no_wrap=True)
    table.add_column(columns[1], ratio=1)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _table_command(argv: list[str], prog: str, description: str, read, title, columns) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project directory (.)")
    args = parser.parse_args(argv)

    def run() -> None:
        with system_errors_as_user_errors():  # an unreadable dvc.lock, a failing disk...
            print_table(title, columns, read(args.root))

    exit_on_user_error(run)


def _results(argv: list[str], prog: str) -> None:
    from adaptflow.orchestration.overview import headlines

    description = "The headline figures of every stage, from metrics/*.json (`make results`)."
    _table_command(argv, prog, description, headlines, "adaptflow results", ("stage", "headline"))


def _status(argv: list[str], prog: str) -> None:
    from adaptflow.orchestration.overview import stage_status

    description = "Per stage: up to date, or what changed so that `dvc repro` would run it."
    _table_command(argv, prog, description, stage_status, "adaptflow status", ("stage", "status"))


def _flow(argv: list[str], prog: str) -> None:
    script = Path.cwd() / "flows" / "pipeline.py"

    def run() -> None:
        if not script.is_file():
            raise AdaptflowError(f"{script}: missing; run `{prog}` in the project directory")
        sys.exit(subprocess.run([sys.executable, str(script), *argv]).returncode)

    exit_on_user_error(run)


def _compare(argv: list[str], prog: str) -> None:
    from adaptflow.entry.stage import run_entry_point
    from adaptflow.orchestration import compare

    parser = argparse.ArgumentParser(prog=prog, description=compare.__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="*", help="methods to compare (default: all)")
    parser.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override for every experiment, as in dvc exp run -S",
    )
    args = parser.parse_args(argv)

    def run() -> None:
        root = Path.cwd()
        methods = compare.resolve_methods(args.methods)
        compare.warn_if_results_uncommitted(root)
        name = compare.run_comparison(root, methods, args.set)
        print(compare.table(*compare.collect(root, name)))

    run_entry_point(run, parse_arguments=False)


def _bench(argv: list[str], prog: str) -> None:
    from adaptflow.bench.__main__ import main

    main(argv, prog=prog)


def _label(argv: list[str], prog: str) -> None:
    from adaptflow.entry.label_command import label_command

    label_command(argv, prog)


def _check(argv: list[str], prog: str) -> None:
    from adaptflow.entry.preflight import check_params

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check the whole of params.yaml as every stage does before it works: keys, "
        "types, the method and its options, the validator, the rule, the backbone, the data "
        "roots. One line and exit status 2 when something is wrong.",
    )
    parser.add_argument("--params", type=Path, default=paths.PARAMS, help="(%(default)s)")
    args = parser.parse_args(argv)

    def run() -> None:
        check_params(args.params)
        print(f"{args.params}: ok")

    exit_on_user_error(run)


COMMANDS: dict[str, tuple[Callable[[list[str], str], None], str]] = {
    "check": (_check, "check params.yaml as every stage does first (make check-params)"),
    "predict": (predict_command, "classify images with the exported ONNX model: CSV/JSON out"),
    "results": (_results, "the headline figures of every stage, one table"),
    "status": (_status, "which stages `dvc repro` would run, and why"),
    "flow": (_flow, "run the pipeline through Prefect (flows/pipeline.py; --help for --serve)"),
    "compare": (_compare, "every adaptation method as a DVC experiment, one table"),
    "label": (_label, "target images to label (--serve, --export/--import) to settle `auto`"),
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


EXIT_BROKEN_PIPE = 1  # what Python's docs (signal, "Note on SIGPIPE") advise on EPIPE


@contextlib.contextmanager
def quiet_when_the_reader_leaves() -> Iterator[None]:
    """`adaptflow ... | head -1`: when the reader closes the pipe, exit 1 without a traceback.

    Python's recipe (docs.python.org/3/library/signal.html#note-on-sigpipe): stdout is flushed
    inside, so the error comes here, then pointed at /dev/null, so that the interpreter's last
    flush at exit does not raise again.
    """
    try:
        try:
            yield
        finally:  # an exit (SystemExit) flushes too: argparse's --help, a command's own exit
            sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)


def main(argv: list[str] | None = None) -> None:
    """Dispatch `adaptflow <command> ...`; each command parses (and explains) its own options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    with quiet_when_the_reader_leaves():
        if not argv or argv[0] not in COMMANDS:
            _parser().parse_args(argv)  # prints the help, or the error for an unknown command
            return
        command, *rest = argv
        COMMANDS[command][0](rest, f"adaptflow {command}")
