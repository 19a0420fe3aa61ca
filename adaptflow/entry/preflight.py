"""The whole of params.yaml checked before any stage works, so a typo fails in the first second.

`load_params` checks the file's shape; this adds what needs the registries: the method and its
options (every `adapt.<method>` section), the selection validator the method can use, and the
backbone name. With `adapt.method: auto` every portfolio member is checked as its own stage
would check it, and the portfolio's rule too. Stage entry points, the Prefect flow and the make
targets run it first.

The registries import torch (~2 s a process). A passed check is recorded under
`.adaptflow/preflight/`, keyed by the bytes of params.yaml, the library's source and the
installed torch and torchvision, and a stage whose params.yaml passed already skips the
registries (`skip_if_passed`): a stage that needs no torch for its work (validate, a disabled
rank, a portfolio member that only records) then starts none. The data roots are checked
every time: folders come and go without params.yaml changing.

    adaptflow check            # check ./params.yaml; exit 2 with one line if bad
"""

from __future__ import annotations

import contextlib
from importlib.metadata import version
from pathlib import Path

from adaptflow.core.code import library_source_hashes
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import fingerprint, sha256_file, write_text
from adaptflow.core.params import AUTO_BACKBONE, AUTO_METHOD, Params, load_params
from adaptflow.core.paths import PARAMS, PREFLIGHT
from adaptflow.data.manifest import check_data_roots

PASSED = PREFLIGHT / "passed"  # the key of the last params.yaml that passed, in its project


def check_params(path: Path = PARAMS, *, skip_if_passed: bool = False) -> Params:
    """Read params.yaml and check everything a stage would only check when it runs.
    `skip_if_passed`: leave out the registries' checks if this file passed them before."""
    params = load_params(path)
    project = Path(path).parent
    key = _check_key(path)
    passed_before = _passed(project) == key
    if not (skip_if_passed and passed_before):
        check_registries(params)
    with contextlib.chdir(project):  # data roots are relative to the project
        check_data_roots(params)
    if not passed_before:  # written once per version, not at every stage's start
        with contextlib.suppress(OSError):  # a read-only project checks every time
            write_text(project / PASSED, key)
    return params


def check_registries(params: Params) -> None:
    """What only the registries know: methods and their options, rule, budget, validator,
    backbone (imports torch)."""
    from adaptflow.adapt.rules import check_rule
    from adaptflow.adapt.rungs import schedule_of
    from adaptflow.methods.base import all_methods, method_class, method_options
    from adaptflow.models.backbones import check_backbone
    from adaptflow.training.validators import check_validator

    adapt = params.adapt
    if adapt.method == AUTO_METHOD:
        check_rule(adapt.portfolio.rule)
        schedule_of(params)  # a budget too small for the members is refused here already
        methods = adapt.portfolio.members
        known = ", ".join(sorted(all_methods()))
        unknown = [name for name in methods if name not in all_methods()]
        if unknown:
            raise AdaptflowError(
                f"adapt.portfolio.members: unknown method(s) {', '.join(unknown)}; "
                f"choose from {known}"
            )
        tuning = adapt.portfolio.finetune_on_labels
        if tuning.epochs:  # the kept model trains on with this method when labels exist
            if tuning.method not in all_methods():
                raise AdaptflowError(
                    f"adapt.portfolio.finetune_on_labels.method: unknown method "
                    f"{tuning.method!r}; choose from {known}"
                )
            methods = [*methods, tuning.method]
    else:
        methods = [adapt.method]
    for name in methods:
        method = method_class(name)
        method_options(name, adapt.method_sections())
        check_validator(params.selection.validator, method.uses_source, name)
    if params.pretrain.backbone != AUTO_BACKBONE:  # its candidates are checked by Params
        check_backbone(params.pretrain.backbone)


def _check_key(path: Path) -> str:
    """What the registries' verdict depends on: the file, the library, torch and torchvision."""
    stack = [version(package) for package in ("torch", "torchvision")]
    return fingerprint(sha256_file(path), library_source_hashes(), stack)  # not the path's spelling


def _passed(project: Path) -> str | None:
    try:
        return (project / PASSED).read_text()
    except OSError:
        return None
