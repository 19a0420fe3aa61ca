"""What every stage entry point shares: logging, and turning user errors into one line + exit 2."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from adaptflow import paths
from adaptflow.errors import EXIT_USER_ERROR, AdaptflowError, system_errors_as_user_errors
from adaptflow.io import remove_stale_temporaries

ERROR_PREFIX = "adaptflow error:"
RANK_EXIT_DELAY_SECONDS = 3.0


def is_main_process() -> bool:
    """Rank 0 of a torchrun worker group, or any process outside one (what may write files)."""
    return int(os.environ.get("RANK", "0")) == 0


def configure_logging() -> None:
    """Plain timestamped log lines on stderr; quiet third-party loggers (and ranks above 0)."""
    level = os.environ.get("ADAPTFLOW_LOG_LEVEL", "INFO") if is_main_process() else "WARNING"
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in (
        "great_expectations",
        "urllib3",
        "matplotlib",
        "onnxscript",
        "onnx_ir",
        "torch.onnx",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a user error becomes one `adaptflow error: ...` line and exit 2."""
    configure_logging()
    # rank 0 alone writes outputs; other ranks must not sweep the temporaries it is writing
    stale = remove_stale_temporaries(paths.OUTPUT_DIRS) if is_main_process() else []
    if stale:
        logging.getLogger("adaptflow").info(
            "removed %d temporaries of an interrupted run", len(stale)
        )
    try:
        with system_errors_as_user_errors():  # disk full, read-only...: one line too
            main()
    except AdaptflowError as error:
        if is_main_process():
            print(f"{ERROR_PREFIX} {error}", file=sys.stderr, flush=True)
        else:  # data-parallel ranks mostly fail alike: one `adaptflow error` line, from rank 0
            print(f"rank {os.environ['RANK']} stopped: {error}", file=sys.stderr, flush=True)
            # the launcher stops every process once one exits: let rank 0 exit on its own
            # (same) error first, so the launch reports rank 0's line and nothing more
            time.sleep(RANK_EXIT_DELAY_SECONDS)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX} interrupted; rerun `dvc repro` to resume", file=sys.stderr)
        sys.exit(130)
