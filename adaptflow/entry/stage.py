"""What every entry point shares: --help, a params check, logging, and user errors as one line.

A user error (AdaptflowError) becomes one `adaptflow error: ...` line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable

from adaptflow.core import paths
from adaptflow.core.errors import (
    ERROR_PREFIX,
    EXIT_USER_ERROR,
    STAGE_RERUN,
    AdaptflowError,
    system_errors_as_user_errors,
)
from adaptflow.core.io import remove_stale_temporaries
from adaptflow.core.logs import configure_logging, is_main_process

RANK_EXIT_DELAY_SECONDS = 3.0
STAGE_EPILOG = "Every setting comes from params.yaml; `dvc repro` runs the pipeline."


def refuse_arguments(description: str | None) -> None:
    """Answer --help, and refuse any other argument: stages take everything from params.yaml."""
    parser = argparse.ArgumentParser(description=description, epilog=STAGE_EPILOG)
    parser.parse_args()


def report_user_error(error: AdaptflowError) -> None:
    """Print the one-line error and exit 2 (data-parallel ranks above 0 defer to rank 0)."""
    if is_main_process():
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr, flush=True)
    else:  # data-parallel ranks mostly fail alike: one `adaptflow error` line, from rank 0
        print(f"rank {os.environ['RANK']} stopped: {error}", file=sys.stderr, flush=True)
        # the launcher stops every process once one exits: let rank 0 exit on its own
        # (same) error first, so the launch reports rank 0's line and nothing more
        time.sleep(RANK_EXIT_DELAY_SECONDS)
    sys.exit(EXIT_USER_ERROR)


def run_entry_point(
    main: Callable[[], None], *, parse_arguments: bool = True, check_params: bool = True
) -> None:
    """Run an entry point's main(): --help, the whole params.yaml checked first, one-line errors.

    `parse_arguments`: answer --help from the calling script's docstring and refuse arguments
    (entry points with arguments of their own parse them first and pass False).
    """
    if parse_arguments:
        refuse_arguments(sys.modules["__main__"].__doc__)
    configure_logging()
    # guards, imported when the stage starts: they refuse bad input, never feed an output, so
    # they are not dvc.yaml deps of every stage
    from adaptflow.entry.params_guard import params_as_used

    try:
        with params_as_used():  # one reading of params.yaml, still true when the stage ends
            if check_params:
                from adaptflow.entry.preflight import check_params as check_params_file

                check_params_file(skip_if_passed=True)  # the run's first stage checked it
            _sweep_stale_temporaries()
            with system_errors_as_user_errors(STAGE_RERUN):  # disk full, read-only...: one line
                main()
    except AdaptflowError as error:
        report_user_error(error)
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX} interrupted; rerun `dvc repro` to resume", file=sys.stderr)
        sys.exit(130)


def _sweep_stale_temporaries() -> None:
    # rank 0 alone writes outputs; other ranks must not sweep the temporaries it is writing
    stale = remove_stale_temporaries(paths.OUTPUT_DIRS) if is_main_process() else []
    if stale:
        logging.getLogger("adaptflow").info(
            "removed %d temporaries of an interrupted run", len(stale)
        )
