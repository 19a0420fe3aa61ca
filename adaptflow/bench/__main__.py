"""`python -m adaptflow.bench <benchmark> ...`: each prints its figures."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "throughput": "img/s of the adapt loop vs a plain PyTorch loop on the same model",
    "rank": "transferability estimators vs the target accuracy candidates reach (Kendall's tau)",
    "shifts": "every method on a suite of hard shifts; regret of label-free cross-method rules",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m adaptflow.bench", description=__doc__)
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, summary in BENCHMARKS.items():
        module = importlib.import_module(f"adaptflow.bench.{name}")
        sub = commands.add_parser(name, help=summary, description=module.__doc__)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
