"""labels/target.csv: what validate accepts, what it refuses (one line naming the row), and the
files `adaptflow label` keeps beside it."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import write_csv
from adaptflow.data.labels import (
    LABEL_COLUMNS,
    QUERY_COLUMNS,
    check_labels,
    labels_by_hash,
    merge_answers,
    pending,
    read_table,
    train_files,
    validated_labels,
)
from adaptflow.data.manifest import scan_domains, source_classes
from tests.helpers.toy import make_tree


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Two tiny domains (classes a, b, c) and their manifest, in the working directory."""
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path / "src", seed=1)
    make_tree(tmp_path / "tgt", seed=2)
    return tmp_path


def manifest_of(project):
    return scan_domains(project / "src", project / "tgt", 10**7).manifest()


CLASSES = ["a", "b", "c"]


def check(rows: pd.DataFrame, manifest: pd.DataFrame, project):
    return check_labels(rows, manifest, project / "tgt", source_classes(manifest), paths.LABELS)


def labels(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def test_valid_labels_come_back_by_content_hash_with_unit_weights(project):
    manifest = manifest_of(project)
    write_csv(paths.LABELS, labels(("train/a/0.png", "b"), ("train/c/1.png", "c")))
    table = validated_labels(manifest, project / "tgt")
    files = train_files(manifest, project / "tgt").set_index("path")["sha256"]
    assert sorted(table["sha256"]) == sorted([files["train/a/0.png"], files["train/c/1.png"]])
    assert dict(zip(table["sha256"], table["label"], strict=True))[files["train/a/0.png"]] == "b"
    assert table["weight"].tolist() == [1.0, 1.0]
    assert len(files) == 3 * 8 and not any(p.startswith("test/") for p in files.index)


def test_no_labels_file_means_no_labels(project):
    assert validated_labels(manifest_of(project), project / "tgt").empty


@pytest.mark.parametrize(
    ("row", "says"),
    [
        (("train/a/99.png", "a"), "no such image"),
        (("test/a/0.png", "a"), "a target test image, not a target train image"),
        (("train/a/0.png", "dog"), "label 'dog' is no source class (a, b, c)"),
        (("../src/train/a/0.png", "a"), "give a path relative to data.target"),
    ],
)
def test_a_bad_row_is_refused_in_one_line_naming_it(project, row, says):
    manifest = manifest_of(project)
    with pytest.raises(AdaptflowError) as error:
        check(labels(("train/b/0.png", "b"), row), manifest, project)
    message = str(error.value)
    assert message.startswith(f"labels/target.csv line 3 ({row[0]}): ") and says in message
    assert "\n" not in message


def test_a_path_given_two_labels_is_refused(project):
    manifest = manifest_of(project)
    twice = labels(("train/b/0.png", "b"), ("train/b/1.png", "a"), ("train/b/0.png", "c"))
    said = r"line 4 \(train/b/0.png\): labeled 'c' here and 'b' on line 2"
    with pytest.raises(AdaptflowError, match=said):
        check(twice, manifest, project)


def test_a_target_test_image_copied_into_target_train_is_refused(project):
    """The copy is a different path with the same bytes: its label would be a test label."""
    shutil.copyfile(project / "tgt/test/c/2.png", project / "tgt/train/c/copy.png")
    manifest = manifest_of(project)
    said = r"\(train/c/copy.png\): its content is also a target test image"
    with pytest.raises(AdaptflowError, match=said):
        check(labels(("train/c/copy.png", "c")), manifest, project)


def test_actively_drawn_images_weigh_one_over_pool_times_probability(project):
    manifest = manifest_of(project)
    write_csv(paths.LABELS, labels(("train/a/0.png", "a"), ("train/a/1.png", "a")))
    queries = pd.DataFrame([("train/a/0.png", "1", "0.25", "20")], columns=QUERY_COLUMNS)
    write_csv(paths.LABEL_QUERIES, queries)
    table = validated_labels(manifest, project / "tgt")
    files = train_files(manifest, project / "tgt").set_index("path")["sha256"]
    weights = dict(zip(table["sha256"], table["weight"], strict=True))
    assert weights[files["train/a/0.png"]] == pytest.approx(1 / (20 * 0.25))
    assert weights[files["train/a/1.png"]] == 1.0
    write_csv(paths.LABEL_QUERIES, queries.assign(probability="zero"))
    with pytest.raises(AdaptflowError, match="labels/queries.csv: the row of train/a/0.png"):
        validated_labels(manifest, project / "tgt")


def test_a_labels_file_with_other_columns_is_refused(project):
    paths.LABELS.parent.mkdir(parents=True)
    paths.LABELS.write_text("file,class\ntrain/a/0.png,a\n")
    with pytest.raises(AdaptflowError, match="columns are file, class; expected path,label"):
        read_table(paths.LABELS, LABEL_COLUMNS)


def test_answers_merge_into_the_labels_file_and_unanswered_queries_stay_pending(project):
    manifest = manifest_of(project)
    write_csv(paths.TARGET_TRAIN_FILES, train_files(manifest, project / "tgt"))
    current = labels(("train/a/0.png", "a"))
    answers = labels(("train/a/0.png", "b"), ("train/b/3.png", "b"), ("train/c/4.png", ""))
    merged, count = merge_answers(current, answers, CLASSES, project / "to_label.csv")
    assert count == 2
    assert merged.values.tolist() == [["train/a/0.png", "b"], ["train/b/3.png", "b"]]
    queries = pd.DataFrame([(p, "1", "0.1", "24") for p in answers["path"]], columns=QUERY_COLUMNS)
    assert pending(merged, queries)["path"].tolist() == ["train/c/4.png"]
    assert len(labels_by_hash(merged, queries)) == 2
    said = r"to_label.csv line 2 \(test/a/0.png\): not a target train image"
    with pytest.raises(AdaptflowError, match=said):
        merge_answers(current, labels(("test/a/0.png", "a")), CLASSES, project / "to_label.csv")
