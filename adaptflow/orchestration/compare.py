"""Comparing adaptation methods on your data, ranked without target labels, through DVC.

The methods run as one DVC experiment (`dvc exp run --temp`) of the `adapt.method: auto`
portfolio with `adapt.portfolio.budget: full` (every method trains to the end): each method is
its own adapt_member stage, and the adapt stage scores every one (and the unadapted source
model) with the label-free rule `adapt.portfolio.rule`. The table ranks the methods by that
score; target test accuracy appears only in a column marked as the oracle, to judge the
ranking, never to make it. Stages that do not depend on the methods (validation, the decoded
cache, the source model) are reused, and the workspace is left untouched; the experiment stays
in DVC (`dvc exp show`, `dvc exp apply compare-portfolio`).

    adaptflow compare                     # every method
    adaptflow compare dann shot -S adapt.epochs=20
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import SOURCE_ONLY, load_params
from adaptflow.orchestration.dvc_runner import dvc_command, run_dvc

EXPERIMENT = "compare-portfolio"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    method: str
    label_free_score: float  # the rule's score (higher is better)
    rule: str
    kept: bool  # the model adapt.method: auto keeps
    train_seconds: float
    warnings: int  # label-free warnings of the method's own run
    oracle_target_accuracy: float  # target test accuracy: for judging the ranking only


def _git_tracks(root: Path, path: str) -> bool:
    result = subprocess.run(
        ["git", "ls-files", "--", path], cwd=root, capture_output=True, text=True
    )
    return bool(result.stdout.strip())


def data_to_copy(root: Path) -> list[str]:
    """Data roots a temporary experiment would miss: inside the project, tracked by neither git
    nor DVC. (Roots outside the project are read where they are; they must be absolute.)"""
    from dvc.repo import Repo

    data = load_params(root / "params.yaml").data
    with Repo(str(root)) as repo:
        managed = [Path(out.fs_path) for out in repo.index.outs]
    copies = []
    for key, value in (("data.source", data.source), ("data.target", data.target)):
        path = (root / value).resolve()
        if not path.is_relative_to(root.resolve()):
            if not Path(value).is_absolute():
                raise AdaptflowError(
                    f"compare: {key} ({value}) is a relative path outside the project; experiments "
                    "run in a temporary copy, so make it absolute"
                )
            continue
        relative = path.relative_to(root.resolve()).as_posix()
        if not _git_tracks(root, relative) and not any(path.is_relative_to(m) for m in managed):
            copies.append(relative)
    return copies


def warn_if_results_uncommitted(root: Path) -> None:
    """Temporary experiments reuse only committed results; say so when they are not."""
    if not _git_tracks(root, "dvc.lock"):
        log.warning(
            "dvc.lock is not committed: every experiment reruns the whole pipeline. Commit "
            "dvc.lock, metrics/, plots/ and reports/ to reuse the stages a method does not change."
        )


def run_comparison(
    root: Path, methods: list[str], overrides: list[str], on_line: Callable[[str], None] = print
) -> str:
    """Run `methods` as the portfolio of experiment `compare-portfolio`; return its name.

    Raises StageFailed (retried by the compare flow only when transient)."""
    # replace the experiment of an earlier comparison, if any
    subprocess.run(dvc_command("exp", "remove", EXPERIMENT), cwd=root, capture_output=True)
    members = f"adapt.portfolio.members=[{','.join(methods)}]"
    args = ["exp", "run", "--temp", "-n", EXPERIMENT, "-S", "adapt.method=auto", "-S", members]
    # every method to the end, ranked side by side (`++`: also where params.yaml has no budget)
    args += ["-S", "++adapt.portfolio.budget=full"]
    for item in overrides:
        args += ["-S", item]
    for path in data_to_copy(root):
        args += ["-C", path]
    run_dvc(root, args, label=EXPERIMENT, on_line=on_line)
    return EXPERIMENT


def experiment_json(root: Path, name: str, path: str) -> dict[str, Any]:
    """A metrics file as the DVC experiment `name` committed it."""
    import dvc.api

    revs = [row["rev"] for row in dvc.api.exp_show(repo=str(root)) if row["Experiment"] == name]
    if not revs:
        raise AdaptflowError(f"compare: experiment {name} not found; rerun `adaptflow compare`")
    shown = subprocess.run(
        ["git", "show", f"{revs[0]}:{path}"], cwd=root, capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise AdaptflowError(f"compare: experiment {name} has no {path}; rerun `adaptflow compare`")
    return json.loads(shown.stdout)


def collect(root: Path, name: str = EXPERIMENT) -> tuple[list[Row], list[str]]:
    """The comparison rows of experiment `name`, and the warnings of the model it kept."""
    adaptation = experiment_json(root, name, "metrics/adapt.json")
    evaluation = experiment_json(root, name, "metrics/evaluate.json")
    rule, members = adaptation["rule"], adaptation["members"]
    rows = [
        Row(
            method=name,
            label_free_score=score,
            rule=rule,
            kept=name == adaptation["chosen"],
            train_seconds=members.get(name, {}).get("train_seconds", 0.0),
            warnings=len(members.get(name, {}).get("warnings", [])),
            oracle_target_accuracy=evaluation["selection"]["models"][name],
        )
        for name, score in adaptation["scores"][rule].items()
    ]
    return rows, adaptation["warnings"]


def table(rows: list[Row], warnings: list[str] = ()) -> str:
    """Markdown, ranked by the label-free score; the oracle column only judges the ranking."""
    rule = rows[0].rule
    lines = [
        f"| # | method | {rule} (label-free) | kept | train time (s) | warnings | "
        "target accuracy (oracle) |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    ranked = sorted(rows, key=lambda r: -r.label_free_score)
    for place, r in enumerate(ranked, 1):
        name = f"{r.method} (no adaptation)" if r.method == SOURCE_ONLY else r.method
        lines.append(
            f"| {place} | {name} | {r.label_free_score:.4f} | {'yes' if r.kept else ''} | "
            f"{r.train_seconds:.1f} | {r.warnings} | {r.oracle_target_accuracy:.4f} |"
        )
    lines += ["", "Warnings of the kept model: " + ("none" if not warnings else "")]
    lines += [f"- {warning}" for warning in warnings]
    return "\n".join(lines) + "\n"


def resolve_methods(methods: list[str] | None) -> list[str]:
    """The methods to compare: those named (checked), or every registered one (the source
    model is always compared, as source_only)."""
    from adaptflow.methods.base import all_methods

    known = sorted(set(all_methods()) - {SOURCE_ONLY})
    unknown = sorted(set(methods or []) - set(known))
    if unknown:
        raise AdaptflowError(
            f"compare: unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return list(methods or known)
