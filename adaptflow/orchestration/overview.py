"""Reading a run's results: the headline of every stage, and which stages are up to date.

`adaptflow results` (and `make results`) prints one row per stage, in pipeline order, from the
small metrics/<stage>.json files DVC tracks; `adaptflow status` says, per stage, whether
`dvc repro` would run it and why. Both only read: figures a stage does not write (an older run,
a stage added later) are left out, keys this module does not know are ignored. Whatever state
the checkout is in (a corrupt dvc.lock, a `dvc repro` holding DVC's lock...), what DVC raises
becomes one AdaptflowError line naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import utf8_problem

Figure = tuple[str, str, Callable[[Any], str]]  # label, dotted key in the metrics file, format


def _number(digits: int) -> Callable[[Any], str]:
    return lambda value: f"{value:.{digits}f}"


def _signed(value: Any) -> str:
    return f"{value:+.4f}"


def _seconds(value: Any) -> str:
    return f"{value:.0f} s"


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def _plain(value: Any) -> str:
    return str(value)


HEADLINES: dict[str, list[Figure]] = {
    "validate": [
        ("", "success", lambda value: "passed" if value else "FAILED"),
        ("failed checks:", "failed_checks", lambda value: ", ".join(value)),
        ("images", "images", _plain),
        ("unreadable", "unreadable", _plain),
    ],
    "rank": [
        ("enabled", "enabled", _yes_no),
        ("chosen", "choice.name", _plain),
        ("estimator", "estimator", _plain),
    ],
    "pretrain": [
        ("source val accuracy", "source_val_accuracy", _number(4)),
        ("epochs", "epochs", _plain),
        ("img/s", "images_per_second", _number(0)),
        ("time", "train_seconds", _seconds),
    ],
    "adapt": [
        ("method", "method", _plain),
        ("validator", "validator", _plain),
        ("rule", "rule", _plain),
        ("kept", "chosen", _plain),
        ("score", "selected_score", _number(4)),
        ("epoch", "selected_epoch", _plain),
        ("negative transfer suspected", "negative_transfer_suspected", _yes_no),
        ("kept source model", "fell_back_to_source", _yes_no),
        ("time", "train_seconds", _seconds),
    ],
    "evaluate": [
        ("target accuracy", "target_accuracy", _number(4)),
        ("source-only", "source_only_target_accuracy", _number(4)),
        ("gain", "adaptation_gain", _signed),
        ("macro-F1", "target_macro_f1", _number(4)),
        ("ECE", "target_ece", _number(4)),
        ("negative transfer", "negative_transfer", _yes_no),
    ],
    "export": [
        ("top-1 agreement", "top1_agreement", _number(4)),
        ("max Δlogit", "max_abs_logit_diff", lambda value: f"{value:.1e}"),
        ("onnxruntime batch 1", "latency.batch_1.onnxruntime_ms", lambda value: f"{value:.2f} ms"),
    ],
}
GENERIC_FIGURES = 6  # scalars shown for a metrics file this module has no headline for


def _lookup(metrics: dict[str, Any], dotted: str) -> Any:
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _warnings(metrics: dict[str, Any]) -> str | None:
    """A stage's `warnings` list, if it wrote one: the count and the first."""
    warnings = metrics.get("warnings")
    if not isinstance(warnings, list) or not warnings:
        return None
    more = f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f"warnings: {warnings[0]}{more}"


def headline(stage: str, metrics: dict[str, Any]) -> str:
    """The stage's key figures as `label value` pairs; unknown stages show their first scalars."""
    figures = HEADLINES.get(stage)
    if figures is None:
        scalars = [(k, v) for k, v in metrics.items() if isinstance(v, str | int | float)]
        figures = [(key, key, _plain) for key, _ in scalars[:GENERIC_FIGURES]]
    parts = []
    for label, key, show in figures:
        value = _lookup(metrics, key)
        text = "" if value is None else show(value)
        if text:
            parts.append(f"{label} {text}".strip())
    warnings = _warnings(metrics)
    return " · ".join(parts + ([warnings] if warnings else []))


def pipeline_stages(root: Path) -> list[tuple[str, bool]]:
    """(stage, writes metrics) in dvc.yaml order, each `foreach` member (`name@item`) apart."""
    from dvc.repo import Repo

    _require_pipeline(root)
    with dvc_errors_as_user_errors(root), Repo(str(root), uninitialized=True) as repo:
        return _stages(repo)


def _how_to_restore(path: str) -> str:
    if os.path.basename(path) == "dvc.lock":
        return f"restore it with `git checkout {path}`, or delete it and rerun `dvc repro`"
    return f"fix it, or restore it with `git checkout {path}`"


def _yaml_line(error: BaseException) -> str:
    """` (line N)` where the YAML parser (ruamel, the exception's cause) stopped, if it says."""
    mark = getattr(error.__cause__, "problem_mark", None) or getattr(
        error.__cause__, "context_mark", None
    )
    return f" (line {mark.line + 1})" if mark is not None else ""


def _shape_problem(error: Any) -> str:
    """The first of voluptuous' complaints: `expected a dictionary at stages -> first`."""
    first = error.exc.errors[0] if getattr(error.exc, "errors", None) else error.exc
    where = " -> ".join(str(part) for part in getattr(first, "path", []))
    message = getattr(first, "error_message", str(first))
    return f"{message} at {where}" if where else message


def describe_dvc_error(error: Exception, root: Path) -> str:
    """One line for what DVC raised reading the project: the file, the problem, what to do."""
    from dvc.config import ConfigError
    from dvc.exceptions import NotDvcRepoError
    from dvc.lock import LockError
    from dvc.utils.serialize import EncodingError, YAMLFileCorruptedError
    from dvc.utils.strictyaml import YAMLValidationError

    path = os.path.normpath(getattr(error, "path", "") or "") or "a DVC file"
    if isinstance(error, LockError):
        return (
            f"a DVC run is in progress in {root} (a `dvc repro` or another dvc command holds "
            "DVC's lock); try again when it has finished"
        )
    if isinstance(error, ConfigError):  # .dvc/config, or the .dvc/config.local beside it
        problem = str(error).removeprefix("config file error: ").rstrip(".")
        return f"{root / '.dvc' / 'config'}: {problem}; {_how_to_restore('.dvc/config')}"
    if isinstance(error, NotDvcRepoError):
        return f"{root}: not a DVC repository (no .dvc directory); run `dvc init` there"
    if isinstance(error, EncodingError):
        problem = "not UTF-8 text"
        with contextlib.suppress(OSError):
            problem = utf8_problem((root / path).read_bytes()) or problem
        return f"{path}: {problem}; {_how_to_restore(path)}"
    if isinstance(error, YAMLFileCorruptedError):
        return f"{path}: not valid YAML{_yaml_line(error)}; {_how_to_restore(path)}"
    if isinstance(error, YAMLValidationError):
        return f"{path}: not what DVC expects ({_shape_problem(error)}); {_how_to_restore(path)}"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"DVC cannot read the pipeline in {root}: {first_line}; `dvc status` there says more"


@contextlib.contextmanager
def dvc_errors_as_user_errors(root: Path) -> Iterator[None]:
    """Turn what DVC raises reading the project (a DvcException) into one AdaptflowError line."""
    from dvc.exceptions import DvcException

    try:
        yield
    except DvcException as error:
        raise AdaptflowError(describe_dvc_error(error, root)) from error


def _require_pipeline(root: Path) -> None:
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        raise AdaptflowError(f"{dvc_yaml}: missing; run this in an adaptflow project directory")


def _stages(repo: Any) -> list[tuple[str, bool]]:
    # DVC expands foreach (from params.yaml) as `dvc repro` does
    return [(stage.name, bool(stage.metrics)) for stage in repo.index.stages if stage.cmd]


def _workspace_file(root: Path) -> Callable[[str], str | None]:
    def read(stage: str) -> str | None:
        file = root / paths.metrics_file(stage)
        return file.read_bytes().decode("utf-8", errors="replace") if file.is_file() else None

    return read


def _metrics_row(stage: str, read: Callable[[str], str | None], missing: str) -> str:
    """The stage's headline; else why there is none (no file, unreadable, not JSON)."""
    try:
        text = read(stage)
    except OSError as error:
        return f"{paths.metrics_file(stage)} cannot be read ({error.strerror}); rerun the stage"
    if text is None:
        return missing
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError:
        return f"{paths.metrics_file(stage)} is not valid JSON; rerun the stage"
    return headline(stage, metrics) if isinstance(metrics, dict) else ""


def headlines(
    root: Path,
    read: Callable[[str], str | None] | None = None,
    missing: str = "not run yet (dvc repro)",
) -> list[tuple[str, str]]:
    """(stage, headline) for every stage that writes metrics, then any other metrics file.

    `read(stage)` gives the text of its metrics file, None when there is none (default: the
    workspace's files; the CI report passes one that reads another git revision).
    """
    read = read or _workspace_file(root)
    stages = [name for name, has_metrics in pipeline_stages(root) if has_metrics]
    others = sorted(p.stem for p in (root / paths.METRICS).glob("*.json") if p.stem not in stages)
    return [(stage, _metrics_row(stage, read, missing)) for stage in stages + others]


def _changes(entries: list[Any]) -> str:
    """DVC's status entries for one stage, as `changed deps: a, b; changed outs: c`."""
    parts = []
    for entry in entries:
        if isinstance(entry, dict):
            for kind, items in entry.items():
                names = [
                    f"{name} ({', '.join(sorted(value))})" if isinstance(value, dict) else name
                    for name, value in items.items()
                ]
                parts.append(f"{kind}: {', '.join(names)}")
        else:
            parts.append(str(entry))
    return "; ".join(parts)


def stage_status(root: Path) -> list[tuple[str, str]]:
    """(stage, `up to date` or what changed), in dvc.yaml order, as `dvc status` sees it."""
    from dvc.repo import Repo

    _require_pipeline(root)
    # one repository read for the stage list and their status
    with dvc_errors_as_user_errors(root), Repo(str(root)) as repo:
        stages = [name for name, _ in _stages(repo)]
        status = repo.status()
    rows = [(name, _changes(status[name]) if name in status else "up to date") for name in stages]
    return rows + [
        (name, _changes(entries)) for name, entries in status.items() if name not in stages
    ]
