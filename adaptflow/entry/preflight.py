"""The whole of params.yaml checked before any stage works, so a typo fails in the first second.

`load_params` checks the file's shape; this adds what needs the registries: the method and its
options (every `adapt.<method>` section), the selection validator the method can use, and the
backbone name. With `adapt.method: auto` every portfolio member is checked as its own stage
would check it, and the portfolio's rule too. Stage entry points, the Prefect flow and the make
targets run it first.

    adaptflow check            # check ./params.yaml; exit 2 with one line if bad
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from adaptflow.adapt.rules import check_rule
from adaptflow.adapt.rungs import schedule_of
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import AUTO_BACKBONE, AUTO_METHOD, Params, load_params
from adaptflow.core.paths import PARAMS
from adaptflow.data.manifest import check_data_roots
from adaptflow.methods.base import all_methods, method_class, method_options
from adaptflow.models.backbones import check_backbone
from adaptflow.training.validators import check_validator


def check_params(path: Path = PARAMS) -> Params:
    """Read params.yaml and check everything a stage would only check when it runs."""
    params = load_params(path)
    adapt = params.adapt
    if adapt.method == AUTO_METHOD:
        check_rule(adapt.portfolio.rule)
        schedule_of(params)  # a budget too small for the members is refused here already
        methods = adapt.portfolio.members
        unknown = [name for name in methods if name not in all_methods()]
        if unknown:
            raise AdaptflowError(
                f"adapt.portfolio.members: unknown method(s) {', '.join(unknown)}; choose from "
                f"{', '.join(sorted(all_methods()))}"
            )
    else:
        methods = [adapt.method]
    for name in methods:
        method = method_class(name)
        method_options(name, adapt.method_sections())
        check_validator(params.selection.validator, method.uses_source, name)
    if params.pretrain.backbone != AUTO_BACKBONE:  # its candidates are checked by Params
        check_backbone(params.pretrain.backbone)
    with contextlib.chdir(Path(path).parent):  # data roots are relative to the project
        check_data_roots(params)
    return params
