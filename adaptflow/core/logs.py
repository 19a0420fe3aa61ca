"""Log lines: plain and timestamped on stderr, from rank 0 only in a data-parallel run."""

from __future__ import annotations

import logging
import os
import sys


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
