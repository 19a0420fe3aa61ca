"""`python -m adaptflow.bench <benchmark> ...`: each prints its figures."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "throughput": "img/s of the adapt loop vs a plain PyTorch loop on the same model",
    "rank": "transferability estimators vs the target accuracy candidates reach (Kendall's tau)",
    "predict": "img/s of `adaptflow predict` (decode + onnxruntime) over a folder of images",
    "shifts": "every method on a suite of hard shifts; regret of label-free cross-method rules",
    "methods": "every adaptation method on the embedded demo over several seeds (mean +- std)",
    "demo-run": "the wall time of each stage of a fresh demo run, and that run's figures",
    "rungs": "successive halving over the portfolio: do early label-free scores pick the winner?",
    "labels": "a few target labels for the choice: regret at 0-48 labels, active vs random",
    "warnings": "do the label-free disagreement warnings fire where the kept model is poor?",
    "ddp": "how far two gloo processes end from one, per method (weights, losses, scores)",
}


def main(argv: list[str] | None = None, prog: str = "python -m adaptflow.bench") -> None:
    listing = "\n".join(f"  {name:<11} {summary}" for name, summary in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{__doc__}\n\nbenchmarks:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the benchmark's options")
    chosen = parser.parse_args(argv)
    # only the chosen benchmark is imported: the throughput one must run where Python has
    # torch and the GPU bundle alone (the rank one pulls in torchmetrics, scipy, matplotlib)
    module = importlib.import_module(f"adaptflow.bench.{chosen.benchmark.replace('-', '_')}")
    sub = argparse.ArgumentParser(
        prog=f"{prog} {chosen.benchmark}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub)
    module.run(sub.parse_args(chosen.arguments))


if __name__ == "__main__":
    main()
