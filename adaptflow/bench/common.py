"""What the benchmarks share: params variants and a scratch project over the demo cache."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from adaptflow import paths
from adaptflow.params import Params, parse_params


def with_changes(params: Params, **sections: dict) -> Params:
    """`params` with whole values or section keys replaced (validated again)."""
    raw = params.model_dump(by_alias=True)
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return parse_params(raw)


def with_overrides(params: Params, overrides: list[str]) -> Params:
    """Apply `dotted.key=value` overrides (values parsed as YAML), like `dvc exp run -S`."""
    raw = params.model_dump(by_alias=True)
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return parse_params(raw)


def mean_std(values: list[float]) -> str:
    """Percent mean ± std of fractions."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * spread:4.1f}"


@contextlib.contextmanager
def scratch_project(project: Path) -> Iterator[Path]:
    """Work in a temporary directory that sees `project`'s decoded cache (run `dvc repro
    prepare` first); the library reads data/cache and writes models and state relative to it."""
    if not (project / paths.SOURCE_TRAIN).is_file():
        raise SystemExit(f"{project / paths.CACHE}: missing; run `dvc repro prepare` first")
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="adaptflow-bench-") as scratch:
        os.chdir(scratch)
        try:
            paths.CACHE.parent.mkdir(parents=True)
            os.symlink(project / paths.CACHE, paths.CACHE)
            yield Path(scratch)
        finally:
            os.chdir(previous)


def cpu_name() -> str:
    """The CPU model and the threads PyTorch uses, for benchmark headers."""
    import torch

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} x{torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"CPU x{torch.get_num_threads()} threads"
