"""A stage's lock entry claims only the params its outputs were made with.

DVC reads a stage's params when it writes dvc.lock, after the command ran: an edit to
params.yaml while the stage trains would be recorded against outputs made with the old values,
and `dvc status` would then call the stage up to date. So a stage run by DVC (`DVC_STAGE` set)
reads params.yaml once, works with that text only (core.params.pinned_params), and before it
exits compares the values of the params dvc.yaml declares for it with the file as it is now. If
any changed, the stage fails: DVC then writes no lock entry for it, and the next `dvc repro`
runs it again with the new values.

What is left: an edit in the milliseconds between this check and DVC writing the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import parse_params_yaml, pinned_params, read_params_text
from adaptflow.core.paths import PARAMS

MISSING = "<missing>"
log = logging.getLogger(__name__)


def declared_params(stage: str, root: Path) -> dict[Path, list[str]]:
    """The params files and keys dvc.yaml declares for `stage` (`name` or `name@item`); an
    empty key list means the whole file. Read from dvc.yaml directly when it is plain (every
    stage of ours: a stage start pays ~20 ms, not DVC's ~0.5 s), else resolved by DVC."""
    plain = _declared_in_plain_dvc_yaml(stage, root)
    return plain if plain is not None else declared_by_dvc(stage, root)


def declared_by_dvc(stage: str, root: Path) -> dict[Path, list[str]]:
    """`declared_params` as DVC's own resolver sees it (any template, any dvc.yaml)."""
    from dvc.repo import Repo

    # DVC_STAGE is `name` for the root dvc.yaml, `sub/dvc.yaml:name` for another one
    root = Path(Repo.find_root(str(root)))
    target = stage if ":" in stage else f"dvc.yaml:{stage}"
    with Repo(str(root)) as repo:
        (resolved,) = repo.stage.collect(str(root / target))
        return {Path(dep.def_path): list(dep.params) for dep in resolved.params}


def _declared_in_plain_dvc_yaml(stage: str, root: Path) -> dict[Path, list[str]] | None:
    """The declaration when the stage is plain or a `foreach` over a list whose params use only
    `${item}`; None for anything else (DVC resolves it)."""
    name, _, item = stage.partition("@")
    try:
        definition = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
        definition = definition["stages"][name]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None
    if not isinstance(definition, dict):
        return None
    if item:
        if not isinstance(definition.get("do"), dict) or item not in _foreach_items(
            definition, root
        ):
            return None  # a dict or matrix, or items this reading cannot tell: DVC resolves it
        definition = definition["do"]
    declared: dict[Path, list[str]] = {}
    for entry in definition.get("params") or []:
        files = {PARAMS.name: [entry]} if isinstance(entry, str) else entry
        if not isinstance(files, dict):
            return None
        for file, keys in files.items():
            declared.setdefault(Path(file), []).extend(keys or [])
    resolved = {
        file: [key.replace("${item}", item) if item else key for key in keys]
        for file, keys in declared.items()
    }
    if any("${" in f"{file}{key}" for file, keys in resolved.items() for key in keys):
        return None  # another template: DVC knows its context
    return resolved


def _foreach_items(definition: dict, root: Path) -> list[str]:
    """A `foreach` list's items as strings: written out, or one `${a.b}` of params.yaml."""
    items = definition.get("foreach")
    if isinstance(items, str) and items.startswith("${") and items.endswith("}"):
        raw = parse_params_yaml(read_params_text(root / PARAMS), root / PARAMS)
        items = param_values(raw, [items[2:-1].strip()]).popitem()[1]
    if not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items):
        return []
    return [str(i) for i in items]


def param_values(raw: Any, keys: list[str]) -> dict[str, Any]:
    """`keys` (dotted, as dvc.yaml writes them) looked up in a parsed params file."""
    if not keys:
        return {"": raw}
    values = {}
    for key in keys:
        value = raw
        for part in key.split("."):
            value = value.get(part, MISSING) if isinstance(value, dict) else MISSING
        values[key] = value
    return values


def _current_values(path: Path, keys: list[str], *, pinned: bool) -> dict[str, Any]:
    return param_values(parse_params_yaml(read_params_text(path, pinned=pinned), path), keys)


def changed_params(before: dict[Path, dict[str, Any]]) -> list[str]:
    """The declared params whose values in the files now differ from `before`."""
    changed = []
    for path, values in before.items():
        try:
            now = _current_values(path, list(values) if "" not in values else [], pinned=False)
        except AdaptflowError:  # the file is being rewritten, or was broken: not what ran
            return [f"{path} (no longer readable)"]
        for key, value in values.items():
            changed += differences(key, value, now.get(key))
    return changed


def differences(key: str, before: Any, now: Any) -> list[str]:
    """The dotted keys below `key` whose values differ (a whole section names its leaves)."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            name
            for part in sorted(set(before) | set(now), key=str)
            for name in differences(
                f"{key}.{part}" if key else str(part),
                before.get(part, MISSING),
                now.get(part, MISSING),
            )
        ]
    return [] if before == now else [key or "the whole file"]


@contextlib.contextmanager
def params_as_used(stage: str | None = None, root: Path | None = None) -> Iterator[None]:
    """Run the block on one reading of params.yaml; fail at its end if the stage's declared
    params changed meanwhile (only under DVC: a stage run by hand has no lock to protect)."""
    stage = stage or os.environ.get("DVC_STAGE")
    if not stage:
        yield
        return
    # the stage's working directory, where it reads params.yaml (not DVC_ROOT: under `dvc exp
    # run` that can name the user's workspace rather than the experiment's copy)
    root = root or Path.cwd()
    with pinned_params(root / PARAMS):
        try:
            declared = declared_params(stage, root)
        except Exception as error:  # DVC ran the stage, so this is unexpected: say, go on
            log.warning(
                "cannot read what dvc.yaml declares for %s (%s); params not guarded", stage, error
            )
            declared = {}
        before = {
            path: _current_values(root / path, keys, pinned=True) for path, keys in declared.items()
        }
        yield
        changed = changed_params({root / path: values for path, values in before.items()})
    if changed:
        raise AdaptflowError(
            f"params.yaml changed while {stage} ran ({', '.join(changed)}); its outputs were "
            "made with the values it started with, so dvc.lock does not record them: rerun "
            "`dvc repro`"
        )
