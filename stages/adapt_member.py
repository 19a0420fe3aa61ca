"""Stage adapt_member@<method>: one member of the `adapt.method: auto` portfolio, adapted alone
to the first rung of the budget (every epoch with `adapt.portfolio.budget: full`).

dvc.yaml runs one of these per `adapt.portfolio.members` entry; they are independent of each
other (concurrent runs are safe: each has its own outputs and rung state), and the adapt stage
then halves them and trains the survivors on. With any other `adapt.method` the stage only
records that. `--until-epoch E --out DIR` is how the adapt stage trains a survivor on to a later
rung (under torchrun too): the member's model and record at epoch E go to DIR.
"""

import argparse
from functools import partial
from pathlib import Path

from adaptflow.adapt.member_files import write_inactive_record
from adaptflow.core import paths
from adaptflow.core.params import AUTO_METHOD, load_params
from adaptflow.entry.stage import STAGE_EPILOG, run_entry_point


def main(member: str, until_epoch: int | None, out: Path | None) -> None:
    params = load_params()
    if params.adapt.method != AUTO_METHOD:
        write_inactive_record(member, params.adapt.method)
        return
    # imported here: a member that only records starts without torch
    from adaptflow.adapt.members import adapt_member, rung_arguments
    from adaptflow.adapt.rungs import schedule_of

    if until_epoch is None:  # the stage: the first rung, into the member's output folder
        epoch, directory = schedule_of(params)[0].epoch, paths.member_dir(member)
        adapt_member(params, member, epoch, directory, __file__, (member,))
    else:
        arguments = rung_arguments(member, until_epoch, out)
        adapt_member(params, member, until_epoch, out, __file__, arguments)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, epilog=STAGE_EPILOG)
    parser.add_argument("method", help="the portfolio member (an adaptation method) to adapt")
    parser.add_argument("--until-epoch", type=int, help="a later rung (the adapt stage's call)")
    parser.add_argument("--out", type=Path, help="where that rung's model and record go")
    arguments = parser.parse_args()
    if (arguments.until_epoch is None) != (arguments.out is None):
        parser.error("--until-epoch and --out go together (the adapt stage passes both)")
    run = partial(main, arguments.method, arguments.until_epoch, arguments.out)
    run_entry_point(run, parse_arguments=False)
