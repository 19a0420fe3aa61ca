"""`adaptflow label`: ask for the target labels that would most change which model is kept.

    adaptflow label --export to_label/        the next round's images, and to_label/to_label.csv
    adaptflow label --import to_label/to_label.csv   merge the filled copy into labels/target.csv

Run after an `adapt.method: auto` run (`dvc repro`): the round is drawn among the target-train
images without a label, where the likely best models disagree (adaptflow/adapt/queries.py).
An exported round not yet answered is exported again rather than drawn anew. After an import,
`dvc repro` reruns validate, adapt, evaluate and at most export. Never reads target test data.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError, exit_on_user_error
from adaptflow.core.io import atomic_dir, read_json, write_csv
from adaptflow.data.labels import (
    LABEL_COLUMNS,
    QUERY_COLUMNS,
    labels_by_hash,
    merge_answers,
    pending,
    read_table,
    read_train_files,
)

TO_LABEL = "to_label.csv"


def _current() -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_table(paths.LABELS, LABEL_COLUMNS), read_table(paths.LABEL_QUERIES, QUERY_COLUMNS)


def _draw(count: int) -> pd.DataFrame:
    """Draw the next round; the new rows of labels/queries.csv (written here)."""
    from adaptflow.adapt.labeled_selection import load_labeled_target
    from adaptflow.adapt.queries import plan_round
    from adaptflow.core.devices import resolve_device
    from adaptflow.core.io import load_torch
    from adaptflow.core.params import load_params
    from adaptflow.data.pools import load_pool
    from adaptflow.models.classifier import load_classifier

    params = load_params()
    record = read_json(paths.SELECTION_RECORD)
    if "models" not in record:
        raise AdaptflowError(
            "adaptflow label chooses among the models of an `adapt.method: auto` run; "
            "set it in params.yaml and run `dvc repro` first"
        )
    models = {n: load_classifier(paths.SELECTION / f)[0] for n, f in record["models"].items()}
    labels, queries = _current()
    table = labels_by_hash(labels, queries)
    files = read_train_files()
    files = files[~files["sha256"].isin(table["sha256"])]
    unlabeled = dict(zip(files["sha256"], files["path"], strict=True))
    next_round = 1 + max((int(r) for r in queries["round"]), default=0)
    planned = plan_round(
        models,
        load_pool(paths.TARGET_TRAIN, "target train", labeled=False),
        list(load_torch(paths.TARGET_TRAIN, mmap=True)["sha256"]),
        unlabeled,
        load_labeled_target(table),
        resolve_device(params.device),
        seed=params.seed + next_round,
        count=count,
    )
    print(
        f"favourite before this round: {planned.favourite} "
        f"(best with probability {planned.p_best[planned.favourite]:.2f})"
    )
    drawn = pd.DataFrame(
        {
            "path": planned.paths,
            "round": str(next_round),
            "probability": [f"{d.probability:.6g}" for d in planned.draws],
            "pool": [str(d.pool) for d in planned.draws],
        },
        columns=QUERY_COLUMNS,
    )
    write_csv(paths.LABEL_QUERIES, pd.concat([queries, drawn], ignore_index=True))
    return drawn


def export_round(folder: Path, count: int) -> int:
    """Copy the round's images into `folder` (at their paths under data.target) and write
    `folder/to_label.csv`; the round is the unanswered queries, or a new draw."""
    from adaptflow.core.params import load_params

    if folder.exists() and any(folder.iterdir()) and not (folder / TO_LABEL).is_file():
        raise AdaptflowError(
            f"{folder}: not empty and not an earlier export; give a new or empty folder"
        )
    target = Path(load_params().data.target)
    labels, queries = _current()
    asked = pending(labels, queries)
    if asked.empty:
        asked = _draw(count)
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
    labels, _ = _current()
    answers = read_table(answers_file, LABEL_COLUMNS)
    merged, count = merge_answers(labels, answers, classes, answers_file)
    write_csv(paths.LABELS, merged)
    print(
        f"{count} answers merged: {paths.LABELS} holds {len(merged)} labels. "
        "Run `dvc repro` (it reruns validate, adapt, evaluate and at most export), "
        "or `adaptflow label --export` for the next round."
    )


def label_command(argv: list[str], prog: str) -> None:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--export", type=Path, metavar="DIR", help="write the next round to DIR")
    what.add_argument(
        "--import", dest="answers", type=Path, metavar="CSV", help="merge a filled to_label.csv"
    )
    parser.add_argument("--round-size", type=int, default=8, help="images per round (8)")
    args = parser.parse_args(argv)

    def run() -> None:
        if args.answers is not None:
            import_answers(args.answers)
            return
        count = export_round(args.export, args.round_size)
        print(
            f"{count} images in {args.export}: fill the label column of "
            f"{args.export / TO_LABEL}, then `{prog} --import {args.export / TO_LABEL}`"
        )

    exit_on_user_error(run)
