"""Stage adapt_member@<method>: one member of the `adapt.method: auto` portfolio, adapted alone.

dvc.yaml runs one of these per `adapt.portfolio.members` entry; they are independent of each
other (concurrent runs are safe: each has its own outputs and resumable state), and the adapt
stage then picks among them. With any other `adapt.method` the stage only records that.
"""

import sys
from functools import partial

from adaptflow import paths
from adaptflow.adaptation import adapt
from adaptflow.cli import run_stage
from adaptflow.diagnostics import adaptation_warnings
from adaptflow.errors import AdaptflowError
from adaptflow.io import atomic_dir, write_json
from adaptflow.models import save_classifier
from adaptflow.params import AUTO_METHOD, load_params
from adaptflow.portfolio import (
    MODEL_FILE,
    RECORD_FILE,
    inactive_record,
    member_params,
    member_record,
)
from adaptflow.training_run import run_training


def main() -> None:
    if len(sys.argv) != 2:
        raise AdaptflowError("usage: python stages/adapt_member.py <method>")
    member, params = sys.argv[1], load_params()
    if params.adapt.method != AUTO_METHOD:
        with atomic_dir(paths.member_dir(member)) as directory:
            write_json(directory / RECORD_FILE, inactive_record(member, params.adapt.method))
        return
    one = member_params(params, member)
    train = partial(adapt, one, checkpoints=paths.CHECKPOINTS / "portfolio" / member)
    result = run_training(one, "adapt", __file__, train, script_args=(member,), plots=False)
    if result is None:  # torchrun workers ran it, or this is a rank other than 0
        return
    warnings = adaptation_warnings(result, one)
    with atomic_dir(paths.member_dir(member)) as directory:
        info = {"stage": "adapt_member", "method": member, "epoch": result.selected_epoch}
        save_classifier(directory / MODEL_FILE, result.adapted_model, info)
        write_json(directory / RECORD_FILE, member_record(result, member, warnings))


if __name__ == "__main__":
    run_stage(main)
