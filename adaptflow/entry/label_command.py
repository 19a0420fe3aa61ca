"""`adaptflow label`: ask for the target labels that would most change which model is kept.

    adaptflow label --serve                   a labeling page on http://127.0.0.1:8765/
    adaptflow label --export to_label/        the next round's images, and to_label/to_label.csv
    adaptflow label --import to_label/to_label.csv   merge the filled copy into labels/target.csv

Run after an `adapt.method: auto` run (`dvc repro`): the round is drawn among the target-train
images without a label, where the likely best models disagree (adaptflow/adapt/queries.py).
The page asks --rounds rounds, each drawn with the answers so far, and writes every answer to
labels/target.csv as it is given. A round not yet answered is asked again rather than drawn
anew. After labeling, `dvc repro` reruns validate, adapt, evaluate and at most export. Never
reads target test data.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError, exit_on_user_error
from adaptflow.core.io import atomic_dir, write_csv
from adaptflow.data.labels import LABEL_COLUMNS, merge_answers, pending, read_table
from adaptflow.entry.label_rounds import RERUN, Candidates, current_labels

TO_LABEL = "to_label.csv"


def export_round(folder: Path, count: int) -> int:
    """Copy the round's images into `folder` (at their paths under data.target) and write
    `folder/to_label.csv`; the round is the unanswered queries, or a new draw."""
    from adaptflow.core.params import load_params

    if folder.exists() and any(folder.iterdir()) and not (folder / TO_LABEL).is_file():
        raise AdaptflowError(
            f"{folder}: not empty and not an earlier export; give a new or empty folder"
        )
    target = Path(load_params().data.target)
    asked = pending(*current_labels())
    if asked.empty:
        asked = Candidates.load().draw(count)
    if asked.empty:
        raise AdaptflowError("every target train image is labeled already: nothing to ask")
    with atomic_dir(folder) as directory:
        for path in asked["path"]:
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target / path, directory / path)
        write_csv(directory / TO_LABEL, asked[["path"]].assign(label=""))
    return len(asked)


def import_answers(answers_file: Path) -> None:
    """Merge a filled to_label.csv into labels/target.csv (atomically)."""
    from adaptflow.core.io import load_torch

    if not answers_file.is_file():
        raise AdaptflowError(f"{answers_file}: no such file; give the to_label.csv you filled")
    classes = list(load_torch(paths.TARGET_TRAIN, mmap=True)["classes"])
    labels, _ = current_labels()
    answers = read_table(answers_file, LABEL_COLUMNS)
    merged, count = merge_answers(labels, answers, classes, answers_file)
    write_csv(paths.LABELS, merged)
    print(
        f"{count} answers merged: {paths.LABELS} holds {len(merged)} labels. {RERUN}, "
        "or `adaptflow label --export` for the next round."
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: give a port from 0 (any free one) to 65535")
    return int(text)


def label_command(argv: list[str], prog: str) -> None:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--export", type=Path, metavar="DIR", help="write the next round to DIR")
    what.add_argument(
        "--import", dest="answers", type=Path, metavar="CSV", help="merge a filled to_label.csv"
    )
    what.add_argument("--serve", action="store_true", help="serve the labeling page")
    parser.add_argument("--round-size", type=_positive, default=8, help="images per round (8)")
    parser.add_argument("--rounds", type=_positive, default=3, help="rounds the page asks (3)")
    parser.add_argument("--port", type=_port, default=8765, help="the page's port (8765; 0: any)")
    args = parser.parse_args(argv)

    def run() -> None:
        if args.answers is not None:
            import_answers(args.answers)
            return
        if args.serve:
            from adaptflow.entry.label_page import serve

            serve(args.port, args.rounds * args.round_size, args.round_size)
            return
        count = export_round(args.export, args.round_size)
        print(
            f"{count} images in {args.export}: fill the label column of "
            f"{args.export / TO_LABEL}, then `{prog} --import {args.export / TO_LABEL}`"
        )

    exit_on_user_error(run)
