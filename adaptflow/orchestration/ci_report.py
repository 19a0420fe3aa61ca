"""The pipeline report a pull request gets (CML-style); `make ci-report` writes it locally too.

Markdown: the headline of every stage, `dvc metrics diff` and `dvc params diff` against a base
revision, and the key plots with both revisions drawn together (DVC's own plot definitions from
`dvc plots diff`, rendered to PNG with vl-convert). .github/workflows/ci.yml runs the demo
pipeline on a pull request, writes this report against the base branch and posts it with
`cml comment update`.

    python -m adaptflow.orchestration.ci_report --base main --out ci-report  # report.md, PNGs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError, exit_on_user_error
from adaptflow.core.io import atomic_dir
from adaptflow.orchestration.overview import headlines

# dvc.yaml plot id -> image file: what a reviewer looks at first
KEY_PLOTS = {
    "plots/evaluate/plots/custom/per_class_accuracy_adapted.json": "per_class_accuracy.png",
    "Label-free validator scores per epoch": "validator_scores.png",
    "plots/evaluate/plots/sklearn/confusion_adapted.json": "confusion_adapted.png",
}
REPORT_NAME = "report.md"


def _dvc(root: Path, *args: str) -> str:
    """A dvc command's stdout; its failure as one error naming the command."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise AdaptflowError(f"ci-report: `dvc {' '.join(args)}` failed: {lines[-1]}")
    return result.stdout


def _revision(root: Path, base: str) -> str:
    """The base as `name (short hash)`, or an error when git does not know it."""
    result = subprocess.run(
        ["git", "rev-parse", "--short", "--verify", f"{base}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise AdaptflowError(
            f"ci-report: base revision {base!r} is not a commit of this repository; pass "
            "BASE=<branch or commit> (in CI: the pull request's base branch, fetched)"
        )
    return f"{base} ({result.stdout.strip()})"


def render_plots(root: Path, base: str, out: Path) -> list[tuple[str, str]]:
    """Write the key plots (base and workspace together) as PNGs; return (title, file) pairs."""
    import vl_convert

    rendered = json.loads(_dvc(root, "plots", "diff", base, "--json"))
    written = []
    for plot_id, file in KEY_PLOTS.items():
        for item in rendered.get("data", {}).get(plot_id, []):
            if item.get("type") != "vega":
                continue
            spec = item["content"]
            (out / file).write_bytes(vl_convert.vegalite_to_png(spec, scale=1.5))
            title = spec.get("title")
            title = title.get("text") if isinstance(title, dict) else title
            written.append((str(title or plot_id), file))
            break
    return written


def _base_file(root: Path, base: str) -> Callable[[str], str | None]:
    """Read a stage's metrics file as committed at `base` (None when it was not)."""

    def read(stage: str) -> str | None:
        spec = f"{base}:./{paths.metrics_file(stage).as_posix()}"
        result = subprocess.run(["git", "show", spec], cwd=root, capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else None

    return read


def _table_rows(markdown: str) -> int:
    """Data rows of a Markdown table as dvc prints it (header and rule excluded)."""
    return max(0, sum(line.startswith("|") for line in markdown.splitlines()) - 2)


def _folded(title: str, table: str, empty: str) -> list[str]:
    """A DVC diff table under a heading, folded away (a first run diffs every metric)."""
    rows = _table_rows(table)
    if not rows:
        return [f"## {title}", "", empty, ""]
    summary = f"{rows} changed (click to show)"
    return [
        f"## {title}",
        "",
        f"<details><summary>{summary}</summary>",
        "",
        table.strip(),
        "",
        "</details>",
        "",
    ]


def render_ci_report(root: Path, base: str, plots: list[tuple[str, str]]) -> str:
    """The Markdown report of the workspace against `base`."""
    now = dict(headlines(root))
    before = dict(headlines(root, _base_file(root, base), missing="no metrics committed"))
    lines = [
        f"# adaptflow pipeline report (against {_revision(root, base)})",
        "",
        f"| stage | this revision | {base} |",
        "|---|---|---|",
        *[f"| {stage} | {text} | {before.get(stage, '')} |" for stage, text in now.items()],
        "",
    ]
    metrics = _dvc(root, "metrics", "diff", base, "--md")
    lines += _folded(f"Metrics: `dvc metrics diff {base}`", metrics, "No metric changed.")
    params = _dvc(root, "params", "diff", base, "--md")
    lines += _folded(f"Params: `dvc params diff {base}`", params, "No param changed.")
    lines += [f"## Plots ({base} and this revision)", ""]
    lines += [f"![{title}](./{file})\n" for title, file in plots] or ["No plots yet.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(root: Path, base: str, out: Path) -> Path:
    """Write `out/report.md` and its PNGs, replacing `out` whole only when all succeeded."""
    _revision(root, base)  # fail before any rendering when the base is unknown
    with atomic_dir(out) as tmp:
        plots = render_plots(root, base, tmp)
        (tmp / REPORT_NAME).write_text(render_ci_report(root, base, plots), encoding="utf-8")
    return out / REPORT_NAME


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adaptflow.orchestration.ci_report", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--base", default="HEAD", help="git revision to compare with (HEAD)")
    parser.add_argument("--out", type=Path, default=Path("ci-report"), help="(ci-report)")
    args = parser.parse_args(argv)

    def run() -> None:
        print(write_report(Path.cwd(), args.base, args.out))

    exit_on_user_error(run)


if __name__ == "__main__":
    main()
