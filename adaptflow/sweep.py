"""Comparing adaptation methods on your data through DVC experiments, in one table.

Each method runs as a DVC experiment (`dvc exp run --temp -S adapt.method=<m>`) in its own
temporary copy of the workspace, so stages that do not depend on the method (validation, the
decoded cache, the source model) are reused, and the workspace itself is left untouched. The
experiments stay in DVC (`dvc exp show`, `dvc exp apply compare-dann`).

    python -m adaptflow.sweep                     # every method
    python -m adaptflow.sweep dann shot -S adapt.epochs=20
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptflow.errors import AdaptflowError
from adaptflow.runner import dvc_command, run_dvc

PREFIX = "compare-"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    method: str
    target_accuracy: float
    target_macro_f1: float
    validator: str
    label_free_score: float
    train_seconds: float
    negative_transfer: bool


def _git_tracks(root: Path, path: str) -> bool:
    result = subprocess.run(
        ["git", "ls-files", "--", path], cwd=root, capture_output=True, text=True
    )
    return bool(result.stdout.strip())


def data_to_copy(root: Path) -> list[str]:
    """Data roots a temporary experiment would miss: inside the project, tracked by neither git
    nor DVC. (Roots outside the project are read where they are; they must be absolute.)"""
    from dvc.repo import Repo

    from adaptflow.params import load_params

    data = load_params(root / "params.yaml").data
    with Repo(str(root)) as repo:
        managed = [Path(out.fs_path) for out in repo.index.outs]
    copies = []
    for key, value in (("data.source", data.source), ("data.target", data.target)):
        path = (root / value).resolve()
        if not path.is_relative_to(root.resolve()):
            if not Path(value).is_absolute():
                raise AdaptflowError(
                    f"sweep: {key} ({value}) is a relative path outside the project; experiments "
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


def run_method(
    root: Path, method: str, overrides: list[str], on_line: Callable[[str], None] = print
) -> str:
    """Run one method as experiment `compare-<method>`; return the experiment's name.

    Raises StageFailed (retried by the compare flow only when transient)."""
    name = f"{PREFIX}{method}"
    # replace the experiment of an earlier comparison, if any
    subprocess.run(dvc_command("exp", "remove", name), cwd=root, capture_output=True)
    args = ["exp", "run", "--temp", "-n", name, "-S", f"adapt.method={method}"]
    for item in overrides:
        args += ["-S", item]
    for path in data_to_copy(root):
        args += ["-C", path]
    run_dvc(root, args, label=name, on_line=on_line)
    return name


def _value(row: dict[str, Any], file: str, key: str) -> Any:
    for column, value in row.items():  # dvc.api.exp_show names columns "<file>:<key>" or "<key>"
        if column == f"{file}:{key}" or column == key:
            return value
    return None


def collect(root: Path, names: list[str]) -> list[Row]:
    """The comparison rows of the named experiments, read from DVC."""
    import dvc.api

    by_name = {row.get("Experiment"): row for row in dvc.api.exp_show(repo=str(root))}
    rows = []
    for name in names:
        row = by_name.get(name)
        if row is None:
            raise AdaptflowError(f"sweep: experiment {name} not found; rerun the sweep")
        evaluation, adaptation = "metrics/evaluate.json", "metrics/adapt.json"
        rows.append(
            Row(
                method=name.removeprefix(PREFIX),
                target_accuracy=_value(row, evaluation, "target_accuracy"),
                target_macro_f1=_value(row, evaluation, "target_macro_f1"),
                validator=_value(row, adaptation, "validator"),
                label_free_score=_value(row, adaptation, "selected_score"),
                train_seconds=_value(row, adaptation, "train_seconds"),
                # exp_show gives JSON booleans back as the strings "True" / "False"
                negative_transfer=str(_value(row, evaluation, "negative_transfer")) == "True",
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    """Markdown, best target accuracy first."""
    header = "| method | target accuracy | macro-F1 | label-free score | train time (s) | negative "
    lines = [header + "transfer |", "|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: -r.target_accuracy):
        lines.append(
            f"| {r.method} | {r.target_accuracy:.4f} | {r.target_macro_f1:.4f} | "
            f"{r.label_free_score:.4f} ({r.validator}) | {r.train_seconds:.1f} | "
            f"{'yes' if r.negative_transfer else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def resolve_methods(methods: list[str] | None) -> list[str]:
    """The methods to compare: those named (checked), or every registered one."""
    from adaptflow.methods.base import all_methods

    known = sorted(all_methods())
    unknown = sorted(set(methods or []) - set(known))
    if unknown:
        raise AdaptflowError(
            f"sweep: unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return list(methods or known)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from adaptflow.cli import run_entry_point

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
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

    def compare() -> None:
        root = Path.cwd()
        methods = resolve_methods(args.methods)
        warn_if_results_uncommitted(root)
        names = [run_method(root, method, args.set) for method in methods]
        print(table(collect(root, names)))

    run_entry_point(compare, parse_arguments=False)


if __name__ == "__main__":
    main()
