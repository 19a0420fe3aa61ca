"""The user's target labels: `labels/target.csv`, checked against the manifest by validate.

`labels/target.csv` has columns `path,label`: `path` relative to `data.target`, naming a target
*train* image; `label` a source class. `labels/queries.csv` (written by `adaptflow label`)
records how each actively chosen image was drawn: the share of the pool it had when drawn
(`probability`) among `pool` images. Validate writes what adapt may read: one row per labeled
image, by content hash (`data/target_labels.csv`: sha256, label, weight), and the target-train
files `adaptflow label` picks from (`data/target_train_files.csv`: path, sha256; no labels).

The weight undoes how an image was chosen (importance sampling): an image drawn with
probability q from a pool of N counts (1/N)/q times; an image without a recorded draw counts
as a uniformly random one (weight 1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.data.manifest import display_path, source_classes

LABEL_COLUMNS = ["path", "label"]
QUERY_COLUMNS = ["path", "round", "probability", "pool"]
TARGET_LABEL_COLUMNS = ["sha256", "label", "weight"]
TRAIN_FILE_COLUMNS = ["path", "sha256"]


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV with exactly `columns` (strings), or an empty one when the file is absent."""
    if not path.is_file():
        return pd.DataFrame(columns=columns, dtype=str)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise AdaptflowError(f"{path}: not a readable CSV ({error}); fix the file") from None
    if list(frame.columns) != columns:
        raise AdaptflowError(
            f"{path}: columns are {', '.join(frame.columns) or 'none'}; "
            f"expected {','.join(columns)} (see labels/README.md)"
        )
    return frame.apply(lambda column: column.str.strip())


def _target_train(manifest: pd.DataFrame) -> pd.DataFrame:
    rows = manifest[(manifest["domain"] == "target") & manifest["readable"]]
    return rows[rows["split"] == "train"]


def train_files(manifest: pd.DataFrame, target_root: Path) -> pd.DataFrame:
    """Readable target-train images by path relative to `data.target`, with their hashes."""
    rows = _target_train(manifest)
    prefix = display_path(Path(target_root).resolve())
    relative = [Path(p).relative_to(prefix).as_posix() for p in rows["path"]]
    return pd.DataFrame({"path": relative, "sha256": rows["sha256"].tolist()})


def _numbered(rows: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(line in the file, path, label) of each row; the header is line 1."""
    return [(line, p, lab) for line, (p, lab) in enumerate(rows[LABEL_COLUMNS].values, start=2)]


def _refuse(labels_file: Path, line: int, path: str, problem: str) -> AdaptflowError:
    return AdaptflowError(
        f"{labels_file} line {line} ({path}): {problem}; fix or remove the row "
        "(see labels/README.md)"
    )


def check_labels(
    labels: pd.DataFrame,
    manifest: pd.DataFrame,
    target_root: Path,
    classes: list[str],
    labels_file: Path,
) -> pd.DataFrame:
    """The labeled rows with their hashes (path, label, sha256), or a one-line error naming the
    first bad row: a missing image, one outside target train, one whose content is a target test
    image, a label that is no source class, a path (or content) given two labels."""
    root = Path(target_root).resolve()
    prefix = display_path(root)
    target = manifest[manifest["domain"] == "target"]
    by_path = target.set_index("path")
    test_hashes = set(target.loc[target["split"] == "test", "sha256"]) - {""}
    seen: dict[str, tuple[str, int]] = {}  # sha256 -> (label, line)
    hashes = []
    for line, path, label in _numbered(labels):
        shown = display_path(root / path)
        if not path or Path(path).is_absolute() or ".." in Path(path).parts:
            raise _refuse(labels_file, line, path, "give a path relative to data.target")
        if shown not in by_path.index:
            where = "not an image in data.target" if (root / path).exists() else "no such image"
            raise _refuse(labels_file, line, path, f"{where} ({prefix}/{path})")
        row = by_path.loc[shown]
        if row["split"] != "train" or not row["readable"]:
            what = "a target test image" if row["split"] == "test" else "an unreadable image"
            raise _refuse(labels_file, line, path, f"{what}, not a target train image")
        if row["sha256"] in test_hashes:
            raise _refuse(labels_file, line, path, "its content is also a target test image")
        if label not in classes:
            known = ", ".join(classes)
            raise _refuse(labels_file, line, path, f"label {label!r} is no source class ({known})")
        earlier = seen.setdefault(row["sha256"], (label, line))
        if earlier[0] != label:
            twice = f"labeled {label!r} here and {earlier[0]!r} on line {earlier[1]}"
            raise _refuse(labels_file, line, path, twice)
        hashes.append(row["sha256"])
    return labels.assign(sha256=hashes)


def query_weights(checked: pd.DataFrame, queries: pd.DataFrame, queries_file: Path) -> list[float]:
    """Each labeled row's importance weight: (1/pool)/probability for an image drawn by
    `adaptflow label`, 1 for any other."""
    drawn = queries.drop_duplicates("path", keep="first").set_index("path")
    weights = []
    for path in checked["path"]:
        if path not in drawn.index:
            weights.append(1.0)
            continue
        try:
            probability, pool = float(drawn.at[path, "probability"]), int(drawn.at[path, "pool"])
        except ValueError:
            probability, pool = 0.0, 0
        if not 0 < probability <= 1 or pool < 1:
            raise AdaptflowError(
                f"{queries_file}: the row of {path} needs a probability in (0, 1] and a pool "
                "of at least 1; restore the file `adaptflow label` wrote, or delete the row"
            )
        weights.append(1.0 / (pool * probability))
    return weights


def validated_labels(manifest: pd.DataFrame, target_root: Path) -> pd.DataFrame:
    """What adapt reads: one row per labeled image content (sha256, label, weight), from
    labels/target.csv and labels/queries.csv checked against the manifest (empty without them)."""
    labels = read_table(paths.LABELS, LABEL_COLUMNS)
    queries = read_table(paths.LABEL_QUERIES, QUERY_COLUMNS)
    checked = check_labels(labels, manifest, target_root, source_classes(manifest), paths.LABELS)
    return _by_hash(checked, queries)


def _by_hash(checked: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Labeled rows with their hashes -> one row per content (sha256, label, weight)."""
    frame = checked.assign(weight=query_weights(checked, queries, paths.LABEL_QUERIES))
    frame = frame.drop_duplicates("sha256").sort_values("sha256", kind="stable")
    return frame[TARGET_LABEL_COLUMNS].reset_index(drop=True)


def read_train_files() -> pd.DataFrame:
    """data/target_train_files.csv (path, sha256), which validate writes."""
    if not paths.TARGET_TRAIN_FILES.is_file():
        raise AdaptflowError(f"{paths.TARGET_TRAIN_FILES}: missing; run `dvc repro` first")
    return read_table(paths.TARGET_TRAIN_FILES, TRAIN_FILE_COLUMNS)


def labels_by_hash(labels: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """labels/target.csv as adapt reads it (sha256, label, weight), for `adaptflow label`,
    which works between two runs of validate: every path must be a listed target train image."""
    files = read_train_files().drop_duplicates("path").set_index("path")["sha256"]
    for line, path in enumerate(labels["path"], start=2):
        if path not in files.index:
            raise _refuse(
                paths.LABELS, line, path, f"not a target train image in {paths.TARGET_TRAIN_FILES}"
            )
    return _by_hash(labels.assign(sha256=[files[p] for p in labels["path"]]), queries)


def pending(labels: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Queries not answered yet (the rows of labels/queries.csv without a label)."""
    return queries[~queries["path"].isin(labels["path"])]


def merge_answers(
    labels: pd.DataFrame, answers: pd.DataFrame, classes: list[str], answers_file: Path
) -> tuple[pd.DataFrame, int]:
    """labels/target.csv with the filled rows of `answers` (path, label; blank = skipped)
    merged in, a later answer replacing an earlier one; and how many answers there were."""
    known = set(read_train_files()["path"])
    filled = answers[answers["label"] != ""]
    for line, path, label in _numbered(answers):
        if label and path not in known:
            raise _refuse(answers_file, line, path, "not a target train image")
        if label and label not in classes:
            raise _refuse(
                answers_file, line, path, f"label {label!r} is not a class ({', '.join(classes)})"
            )
    merged = pd.concat([labels, filled]).drop_duplicates("path", keep="last")
    return merged.sort_values("path").reset_index(drop=True), len(filled)
