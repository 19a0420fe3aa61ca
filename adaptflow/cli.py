"""What every stage entry point shares: logging, and turning user errors into one line + exit 2."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from adaptflow import paths
from adaptflow.errors import AdaptflowError
from adaptflow.io import remove_stale_temporaries

ERROR_PREFIX = "adaptflow error:"
EXIT_USER_ERROR = 2  # bad data/params: rerunning will not help (flows do not retry it)


def configure_logging() -> None:
    """Plain timestamped log lines on stderr; quiet third-party loggers."""
    logging.basicConfig(
        level=os.environ.get("ADAPTFLOW_LOG_LEVEL", "INFO"),
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
    stale = remove_stale_temporaries(paths.OUTPUT_DIRS)
    if stale:
        logging.getLogger("adaptflow").info(
            "removed %d temporaries of an interrupted run", len(stale)
        )
    try:
        main()
    except AdaptflowError as error:
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX} interrupted; rerun `dvc repro` to resume", file=sys.stderr)
        sys.exit(130)
