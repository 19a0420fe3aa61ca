"""`python -m adaptflow.bench <benchmark> ...`: each prints its figures."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "throughput": "img/s of the adapt loop vs a plain PyTorch loop on the same model",
    "rank": "transferability estimators vs the target accuracy candidates reach (Kendall's tau)",
    "predict": "img/s of `adaptflow predict` (decode + onnxruntime) over a folder of images",
}


def main(argv: list[str] | None = None, prog: str = "python -m adaptflow.bench") -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, summary in BENCHMARKS.items():
        module = importlib.import_module(f"adaptflow.bench.{name}")
        sub = commands.add_parser(name, help=summary, description=module.__doc__)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
