"""dvclive loggers whose directory appears only when the stage succeeds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import atomic_dir


def _open_live(directory: str) -> Any:
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        return Live(dir=directory, save_dvc_exp=False, dvcyaml=None, report=None)
    except SCMError as error:  # dvclive reads the git HEAD, which an empty repository lacks
        raise AdaptflowError(
            f"git: {error}; commit the project once (git add -A && git commit) and rerun"
        ) from None


@contextlib.contextmanager
def live_logger(stage: str, enabled: bool = True) -> Iterator[Any]:
    """A dvclive Live writing into a temporary directory that replaces plots/<stage> on success.

    Not `enabled` (data-parallel ranks above 0): yields None and writes nothing.
    """
    if not enabled:
        yield None
        return
    with atomic_dir(paths.plots_dir(stage)) as directory:
        with _open_live(str(directory)) as live:
            yield live
