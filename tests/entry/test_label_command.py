"""`adaptflow label`: the refusals that keep a user's files safe (the rounds themselves run in
tests/e2e/test_pipeline.py, on a real portfolio, under the leak guard)."""

from __future__ import annotations

import pytest

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import write_json
from adaptflow.entry.label_command import export_round, import_answers, label_command


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
