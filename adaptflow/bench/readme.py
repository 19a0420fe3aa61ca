"""README.md's figures, rendered from the committed results files.

Every measured figure in README.md lies between two markers,

    <!-- results: NAME -->
    (generated: do not edit by hand)
    <!-- /results -->

and REGIONS says, for each NAME, which results file holds its figures (a path, or a glob
whose files are all rendered together) and which function turns that file's content into
Markdown. To add one: write the results file from the benchmark (`RunRecord(...).write`),
a `render(results) -> str`, a line in REGIONS, and the two markers in README.md.

    python -m adaptflow.bench.readme            # rewrite README.md (make results-readme)
    python -m adaptflow.bench.readme --check    # exit 1, naming the stale regions, if it differs
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
from adaptflow.errors import ERROR_PREFIX, EXIT_USER_ERROR, AdaptflowError
from adaptflow.io import read_json, write_text

README = Path("README.md")
REGION = re.compile(r"<!-- results: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /results -->", re.S)
MARKER = re.compile(r"<!-- /?results\b")


@dataclass(frozen=True)
class Region:
    source: str  # a results file, or a glob ("results/throughput/*.json"): render gets a list
    render: Callable[[Any], str]

    def load(self, root: Path) -> Any:
        """The content of the results file (a list, sorted by file name, for a glob)."""
        if not any(char in self.source for char in "*?["):
            return _read(root / self.source)
        files = sorted(root.glob(self.source))
        if not files:
            raise AdaptflowError(f"{self.source}: no results file matches; run its benchmark")
        return [_read(path) for path in files]


def _read(path: Path) -> Any:
    return read_json(path, made_by="its benchmark (see the Makefile)")


REGIONS: dict[str, Region] = {
    "demo": Region("results/stage_timings.json", tables.demo_headline),
    "methods": Region("results/methods.json", tables.methods_region),
    "rank": Region("results/rank.json", tables.rank_region),
    "stage-timings": Region("results/stage_timings.json", tables.stage_timings_region),
    "throughput": Region("results/throughput/*.json", tables.throughput_region),
    "predict": Region("results/predict.json", tables.predict_region),
    "ddp": Region("results/ddp_agreement.json", tables.ddp_region),
    "shifts": Region("results/shifts.json", tables.shifts_region),
    "shifts-longer": Region("results/shifts_longer.json", tables.shifts_longer_region),
}


def render(readme: str, root: Path, regions: dict[str, Region] = REGIONS) -> str:
    """`readme` with every region's body rendered again from the results files under `root`.

    A region without a renderer, a renderer without its region, a region written twice or a
    marker left unpaired is an error: a figure is in README.md only if a file is behind it.
    """
    found = [match["name"] for match in REGION.finditer(readme)]
    if len(MARKER.findall(readme)) != 2 * len(found):
        raise AdaptflowError("README.md: a `<!-- results: NAME -->` marker without its pair")
    unknown = sorted(set(found) - set(regions))
    missing = sorted(set(regions) - set(found))
    twice = sorted({name for name in found if found.count(name) > 1})
    for problem, names in (
        ("regions with no renderer in adaptflow/bench/readme.py REGIONS", unknown),
        ("registered regions missing from README.md", missing),
        ("regions written more than once", twice),
    ):
        if names:
            raise AdaptflowError(f"README.md: {problem}: {', '.join(names)}")

    def body(match: re.Match) -> str:
        region = regions[match["name"]]
        text = region.render(region.load(root)).strip("\n")
        return f"<!-- results: {match['name']} -->\n{text}\n<!-- /results -->"

    return REGION.sub(body, readme)


def stale_regions(readme: str, rendered: str) -> list[str]:
    """The names of the regions whose bodies differ between two versions of the README."""
    before = {m["name"]: m["body"] for m in REGION.finditer(readme)}
    after = {m["name"]: m["body"] for m in REGION.finditer(rendered)}
    return [name for name in after if before.get(name) != after[name]]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adaptflow.bench.readme",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args()
    path = args.root / README
    readme = path.read_text(encoding="utf-8")
    rendered = render(readme, args.root)
    stale = stale_regions(readme, rendered)
    if args.check:
        if stale:
            print(f"README.md is stale in: {', '.join(stale)}; run `make results-readme`")
        return 1 if stale else 0
    if stale:
        write_text(path, rendered)
    print(f"README.md: {len(stale)} region(s) rewritten ({', '.join(stale) or 'none'})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AdaptflowError as error:
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
