"""The measured figures of README.md and docs/, rendered from the committed results files.

Every measured figure in those pages lies between two markers,

    <!-- results: NAME -->
    (generated: do not edit by hand)
    <!-- /results -->

and REGIONS says, for each NAME, which results file holds its figures (a path, a glob whose
files are all rendered together, or a tuple of paths) and which function turns that content
into Markdown. Each region appears once across the pages. To add one: write the results file
from the benchmark (`RunRecord(...).write`), a `render(results) -> str` in tables.py, a line in
REGIONS, and the two markers in the page that shows it.

    python -m adaptflow.bench.docs            # rewrite the stale regions (make results-docs)
    python -m adaptflow.bench.docs --check    # exit 1, naming the stale regions, if any
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptflow.bench import tables
from adaptflow.core.errors import AdaptflowError, exit_on_user_error
from adaptflow.core.io import read_json, write_text

PAGES = ("README.md", "docs/*.md")  # where regions may be, relative to the repository
REGION = re.compile(r"<!-- results: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /results -->", re.S)
MARKER = re.compile(r"<!-- /?results\b")


@dataclass(frozen=True)
class Region:
    source: str | tuple[str, ...]  # a results file, a glob ("results/throughput/*.json") or
    # several files; render gets the content, a list sorted by file name, or a list in order
    render: Callable[[Any], str]

    def load(self, root: Path) -> Any:
        """The content of the results file(s) behind this region."""
        if isinstance(self.source, tuple):
            return [Region(source, self.render).load(root) for source in self.source]
        if not any(char in self.source for char in "*?["):
            return _read(root / self.source)
        files = sorted(root.glob(self.source))
        if not files:
            raise AdaptflowError(f"{self.source}: no results file matches; run its benchmark")
        return [_read(path) for path in files]

    def files(self, root: Path) -> list[Path]:
        """Every results file this region renders."""
        sources = self.source if isinstance(self.source, tuple) else (self.source,)
        return [path for source in sources for path in sorted(root.glob(source))]


def _read(path: Path) -> Any:
    return read_json(path, made_by="its benchmark (see the Makefile)")


REGIONS: dict[str, Region] = {
    "summary": Region(
        (
            "results/stage_timings.json",
            "results/methods.json",
            "results/shifts.json",
            "results/rungs.json",
            "results/rungs_longer.json",
        ),
        tables.summary_region,
    ),
    "demo": Region("results/stage_timings.json", tables.demo_headline),
    "methods": Region("results/methods.json", tables.methods_region),
    "rank": Region("results/rank.json", tables.rank_region),
    "labels": Region("results/labels.json", tables.labels_region),
    "warnings": Region("results/warnings.json", tables.warnings_region),
    "stage-timings": Region("results/stage_timings.json", tables.stage_timings_region),
    "throughput": Region("results/throughput/*.json", tables.throughput_region),
    "predict": Region("results/predict.json", tables.predict_region),
    "ddp": Region("results/ddp_agreement.json", tables.ddp_region),
    "shifts": Region("results/shifts.json", tables.shifts_region),
    "shifts-longer": Region("results/shifts_longer.json", tables.shifts_longer_region),
    "rungs": Region("results/rungs.json", tables.rungs_region),
    "rungs-longer": Region("results/rungs_longer.json", tables.rungs_region),
}


def pages(root: Path) -> list[Path]:
    """README.md and every page of docs/, in a fixed order."""
    return [path for pattern in PAGES for path in sorted(root.glob(pattern))]


def render(page: str, root: Path, regions: dict[str, Region] = REGIONS) -> str:
    """`page` with the body of every region in it rendered again from the results files under
    `root`. A region without a renderer, or a marker left unpaired, is an error."""
    found = [match["name"] for match in REGION.finditer(page)]
    if len(MARKER.findall(page)) != 2 * len(found):
        raise AdaptflowError("a `<!-- results: NAME -->` marker without its pair")
    unknown = sorted(set(found) - set(regions))
    if unknown:
        raise AdaptflowError(
            f"regions with no renderer in adaptflow/bench/docs.py REGIONS: {', '.join(unknown)}"
        )

    def body(match: re.Match) -> str:
        region = regions[match["name"]]
        text = region.render(region.load(root)).strip("\n")
        return f"<!-- results: {match['name']} -->\n{text}\n<!-- /results -->"

    return REGION.sub(body, page)


def render_pages(root: Path, regions: dict[str, Region] = REGIONS) -> dict[Path, tuple[str, str]]:
    """Every page as it is and as rendered, `{path: (text, rendered)}`; each registered region
    must appear in exactly one page, once: a figure is shown only if a file is behind it."""
    rendered, seen = {}, []
    for path in pages(root):
        text = path.read_text(encoding="utf-8")
        try:
            rendered[path] = (text, render(text, root, regions))
        except AdaptflowError as error:
            raise AdaptflowError(f"{path.relative_to(root)}: {error}") from None
        seen += [match["name"] for match in REGION.finditer(text)]
    missing = sorted(set(regions) - set(seen))
    twice = sorted({name for name in seen if seen.count(name) > 1})
    for problem, names in (
        ("registered regions in no page", missing),
        ("regions written more than once", twice),
    ):
        if names:
            raise AdaptflowError(f"README.md and docs/: {problem}: {', '.join(names)}")
    return rendered


def stale_regions(page: str, rendered: str) -> list[str]:
    """The names of the regions whose bodies differ between two versions of a page."""
    before = {m["name"]: m["body"] for m in REGION.finditer(page)}
    after = {m["name"]: m["body"] for m in REGION.finditer(rendered)}
    return [name for name in after if before.get(name) != after[name]]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adaptflow.bench.docs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args()
    stale = {}
    for path, (text, rendered) in render_pages(args.root).items():
        names = stale_regions(text, rendered)
        if names:
            stale[path.relative_to(args.root)] = names
            if not args.check:
                write_text(path, rendered)
    listed = "; ".join(f"{path}: {', '.join(names)}" for path, names in stale.items())
    if args.check:
        if stale:
            print(f"stale figures in {listed}; run `make results-docs`")
        return 1 if stale else 0
    print(f"{len(stale)} page(s) rewritten ({listed or 'none stale'})")
    return 0


if __name__ == "__main__":
    exit_on_user_error(lambda: sys.exit(main()))
