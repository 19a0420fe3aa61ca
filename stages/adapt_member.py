"""Stage adapt_member@<method>: one member of the `adapt.method: auto` portfolio, adapted alone.

dvc.yaml runs one of these per `adapt.portfolio.members` entry; they are independent of each
other (concurrent runs are safe: each has its own outputs and resumable state), and the adapt
stage then picks among them. With any other `adapt.method` the stage only records that.
"""

import argparse
from functools import partial

from adaptflow.adapt.diagnostics import adaptation_warnings
from adaptflow.adapt.one_method import adapt
from adaptflow.adapt.portfolio import (
    MODEL_FILE,
    RECORD_FILE,
    inactive_record,
    member_params,
    member_record,
)
from adaptflow.core import paths
from adaptflow.core.io import atomic_dir, write_json
from adaptflow.core.params import AUTO_METHOD, load_params
from adaptflow.entry.stage import STAGE_EPILOG, run_entry_point
from adaptflow.models.classifier import save_classifier
from adaptflow.training.checkpoints import checkpoint_directory, discard_checkpoints
from adaptflow.training.job import run_training


def main(member: str) -> None:
    params = load_params()
    if params.adapt.method != AUTO_METHOD:
        with atomic_dir(paths.member_dir(member)) as directory:
            write_json(directory / RECORD_FILE, inactive_record(member, params.adapt.method))
        return
    one = member_params(params, member)
    scratch = f"portfolio/{member}"  # this member's own resumable state
    train = partial(adapt, one, checkpoints=checkpoint_directory(scratch))
    result = run_training(one, "adapt", __file__, train, script_args=(member,), plots=False)
    if result is None:  # torchrun workers ran it, or this is a rank other than 0
        return
    warnings = adaptation_warnings(result, one)
    with atomic_dir(paths.member_dir(member)) as directory:
        info = {"stage": "adapt_member", "method": member, "epoch": result.selected_epoch}
        save_classifier(directory / MODEL_FILE, result.adapted_model, info)
        write_json(directory / RECORD_FILE, member_record(result, member, warnings))
    discard_checkpoints(scratch)  # only now: a failure above resumes after the last epoch


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, epilog=STAGE_EPILOG)
    parser.add_argument("method", help="the portfolio member (an adaptation method) to adapt")
    arguments = parser.parse_args()
    run_entry_point(partial(main, arguments.method), parse_arguments=False)
