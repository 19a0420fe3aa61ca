"""`adaptflow label`: the refusals that keep a user's files safe (the rounds themselves run in
tests/e2e/test_pipeline.py, on a real portfolio, under the leak guard)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from adaptflow.adapt.queries import UNIFORM_SHARE
from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import write_csv, write_json
from adaptflow.entry.label_command import export_round, import_answers, label_command
from adaptflow.entry.label_rounds import Candidates
from tests.helpers.toy import evidence_of

CLASSES = ["0", "1", "2"]


def test_an_export_never_replaces_a_folder_that_is_not_an_earlier_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(AdaptflowError, match="notes: not empty and not an earlier export"):
        export_round(tmp_path / "notes", 8)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_label_needs_a_portfolio_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data: {source: src, target: tgt}\n")
    write_json(paths.SELECTION_RECORD, {"method": "shot", "by_validator": {}})
    with pytest.raises(AdaptflowError, match="chooses among the models of an `adapt.method: auto`"):
        export_round(tmp_path / "to_label", 8)


def test_importing_a_missing_file_is_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AdaptflowError, match="answers.csv: no such file"):
        import_answers(tmp_path / "answers.csv")
    with pytest.raises(SystemExit) as exit_status:
        label_command(["--import", str(tmp_path / "answers.csv")], "adaptflow label")
    assert exit_status.value.code == 2
    assert "answers.csv: no such file" in capsys.readouterr().err


def test_a_new_round_skips_images_labeled_or_asked_before_and_is_recorded(tmp_path, monkeypatch):
    """Rounds drawn from the candidates' predictions: never an image asked before (answered
    or not: a skipped one is asked again as it was drawn), each draw's probability and pool in
    labels/queries.csv, the round numbered after the last."""
    monkeypatch.chdir(tmp_path)
    files = [f"train/{i % 3}/{i}.png" for i in range(12)]
    hashes = [f"h{i}" for i in range(12)]
    paths.CACHE.mkdir(parents=True)
    torch.save(
        {
            "images": torch.zeros(12, 1, 8, 8, dtype=torch.uint8),
            "sha256": hashes,
            "classes": CLASSES,
        },
        paths.TARGET_TRAIN,
    )
    none = torch.zeros(0, dtype=torch.long)
    empty = {"images": torch.zeros(0, 1, 8, 8, dtype=torch.uint8), "labels": none}
    torch.save({**empty, "classes": CLASSES}, paths.TARGET_LABELED)
    write_csv(paths.TARGET_TRAIN_FILES, pd.DataFrame({"path": files, "sha256": hashes}))
    asked = {"path": files[:2], "round": "1", "probability": "0.1", "pool": "12"}
    write_csv(paths.LABEL_QUERIES, pd.DataFrame(asked))
    # two models that disagree on every image but 4 and 5
    evidence = evidence_of(
        {"tent": [i % 3 for i in range(12)], "mcc": [(i + 1) % 3 for i in range(12)]}
    )
    evidence.predictions["mcc"].target.logits[4:6] = evidence.predictions["tent"].target.logits[4:6]
    evidence.models.update(dict.fromkeys(evidence.predictions))  # no labels: never run
    drawn = Candidates(evidence, hashes, CLASSES, seed=0).draw(8)
    assert len(drawn) == 8 and not set(drawn["path"]) & set(files[:2])
    assert set(drawn["round"]) == {"2"}
    assert [int(p) for p in drawn["pool"]] == list(range(10, 2, -1))  # 12 less the 2 asked
    queries = pd.read_csv(paths.LABEL_QUERIES, dtype=str)
    assert queries["path"].tolist() == files[:2] + drawn["path"].tolist()
    for path, probability, pool in drawn[["path", "probability", "pool"]].values:
        uniform_only = float(probability) == pytest.approx(UNIFORM_SHARE / int(pool), rel=1e-4)
        assert uniform_only == (path in (files[4], files[5]))  # where the models agree
