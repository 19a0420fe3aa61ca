"""Put the hard-shift benchmark's tables (results/shifts.json) into README.md.

Replaces what lies between the `<!-- shifts:start -->` and `<!-- shifts:end -->` markers, so
the README shows exactly what the last `python -m adaptflow.bench shifts` measured.

    python bench/render_shifts.py                  # results/shifts.json -> README.md
    python bench/render_shifts.py other.json --check   # exit 1 if the README differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adaptflow.bench.shifts import (
    render_default,
    render_methods,
    render_rules,
    render_warnings,
)

START, END = "<!-- shifts:start -->", "<!-- shifts:end -->"


def section(results: dict) -> str:
    """The README section's generated part."""
    settings = results["settings"]
    return "\n".join(
        [
            START,
            f"Measured by `python -m adaptflow.bench shifts` ({len(settings['seeds'])} seeds; "
            f"settings `{' '.join(settings['overrides'])}`). Target test accuracy (%) is the "
            "oracle here: it judges the choices, it never makes them.",
            "",
            f"**The default `adapt.method: auto`** (rule `{results['default_rule']}`, default "
            "portfolio), mean over seeds:",
            "",
            render_default(results),
            "",
            "Every method's target accuracy, mean ± std over seeds:",
            "",
            render_methods(results),
            "",
            "Regret (points) of each label-free rule choosing among **all methods** (mean "
            "over seeds), and its worst mean gain over source-only on a shift:",
            "",
            render_rules(results, "suite"),
            "",
            "The same, choosing within the **default portfolio** (its members and source_only):",
            "",
            render_rules(results, "portfolio"),
            "",
            "How often a run carries at least one label-free warning:",
            "",
            render_warnings(results),
            END,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("results/shifts.json"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args()
    readme = args.readme.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        raise SystemExit(f"{args.readme}: no {START} ... {END} markers")
    before, rest = readme.split(START, 1)
    after = rest.split(END, 1)[1]
    updated = before + section(json.loads(args.results.read_text())) + after
    if args.check:
        return int(updated != readme)
    args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
