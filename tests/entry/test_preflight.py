"""The whole-params check is done once per params.yaml: a stage whose file passed already skips
the registries (and torch), and any change to the file, the library or the data roots is
checked again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adaptflow.adapt.member_files import RECORD_FILE
from adaptflow.core.code import library_source_hashes
from adaptflow.core.errors import AdaptflowError
from adaptflow.entry import preflight
from adaptflow.entry.preflight import check_params
from tests.helpers import ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose params.yaml passes: the shipped one, its data roots made here."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="source", target="target")
    params["adapt"]["method"] = "shot"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for root in ("source", "target"):
        (tmp_path / root).mkdir()
    return tmp_path


def edit(project: Path, section: str, **values) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def start(project: Path, *args: str) -> subprocess.CompletedProcess:
    """A fresh interpreter in `project`, importing what it runs from scratch (-X importtime)."""
    command = [sys.executable, "-X", "importtime", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)


def imported_torch(result: subprocess.CompletedProcess) -> bool:
    return any(re.search(r"\|\s+torch$", line) for line in result.stderr.splitlines())


def test_a_stage_after_a_passed_check_skips_the_registries_and_torch(project):
    check = "from adaptflow.entry.preflight import check_params; check_params(skip_if_passed=True)"
    first, second = start(project, "-c", check), start(project, "-c", check)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-2000:]
    assert imported_torch(first) and not imported_torch(second)


def test_a_member_that_only_records_and_a_disabled_rank_start_no_torch(project):
    check_params(project / "params.yaml")
    member = start(project, str(ROOT / "stages/adapt_member.py"), "tent")
    rank = start(project, str(ROOT / "stages/rank.py"))
    assert member.returncode == 0 and rank.returncode == 0, member.stderr[-2000:]
    assert not imported_torch(member) and not imported_torch(rank)
    record = (project / "models/portfolio/tent" / RECORD_FILE).read_text()
    assert '"active": false' in record and "adapt.method is shot, not auto" in record
    assert "Ranking is off" in (project / "reports/rank.md").read_text()


def test_an_edited_params_file_is_checked_again(project):
    check_params(project / "params.yaml")
    edit(project, "adapt", dann={"trade_of": 1.0})
    with pytest.raises(AdaptflowError, match=r"adapt\.dann\.trade_of: unknown key"):
        check_params(project / "params.yaml", skip_if_passed=True)


def test_changed_library_code_checks_the_same_file_again(project, monkeypatch):
    check_params(project / "params.yaml")

    def registries_refuse(params) -> None:
        raise AdaptflowError("the registries looked again")

    monkeypatch.setattr(preflight, "check_registries", registries_refuse)
    check_params(project / "params.yaml", skip_if_passed=True)  # same file, same code: skipped
    changed = [*library_source_hashes(), ("methods/new_method.py", "0" * 64)]
    monkeypatch.setattr(preflight, "library_source_hashes", lambda: changed)
    with pytest.raises(AdaptflowError, match="the registries looked again"):
        check_params(project / "params.yaml", skip_if_passed=True)


def test_the_data_roots_are_checked_even_when_the_file_passed(project):
    check_params(project / "params.yaml")
    (project / "target").rmdir()
    with pytest.raises(AdaptflowError, match="data.target"):
        check_params(project / "params.yaml", skip_if_passed=True)


def test_a_project_where_the_record_cannot_be_written_is_checked_every_time(project):
    (project / ".adaptflow").mkdir()
    (project / ".adaptflow/preflight").write_text("a file where the folder would go")
    assert check_params(project / "params.yaml").adapt.method == "shot"
    assert check_params(project / "params.yaml", skip_if_passed=True).adapt.method == "shot"
