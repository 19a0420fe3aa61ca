"""The one exception type for problems a user can fix (bad data, bad params, missing files),
the system errors (disk full, read-only disk...) that are the user's to fix too, and how a
command reports them: one line, exit status 2."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator

ERROR_PREFIX = "adaptflow error:"  # how every entry point prints an AdaptflowError


class AdaptflowError(Exception):
    """A problem with the user's data, params or files; printed as one line, exit status 2."""


EXIT_USER_ERROR = 2  # bad data/params: rerunning will not help (flows do not retry it)

# how a stage is rerun; commands (predict, status...) are simply run again
STAGE_RERUN = "rerun `dvc repro` (finished training epochs are kept and resumed)"
_FREE_SPACE = "free some space and {rerun}"
_MAKE_ACCESSIBLE = "give the user running the pipeline access to it, then rerun"
# what the user can do about a system error, by errno; other errors stay tracebacks (bugs)
_ADVICE = {
    errno.ENOSPC: f"no space left on the device; {_FREE_SPACE}",
    errno.EDQUOT: f"disk quota exceeded; {_FREE_SPACE}",
    errno.EROFS: "the file system is read-only; make it writable (or run in a writable copy)",
    errno.EACCES: f"permission denied; {_MAKE_ACCESSIBLE}",
    errno.EPERM: f"operation not permitted; {_MAKE_ACCESSIBLE}",
    errno.ELOOP: "a symlink loop (a link that leads back to itself); remove or fix the link",
    errno.ENAMETOOLONG: "the path is too long for the file system; use a shorter one",
    errno.EIO: "input/output error: the disk failed to read or write; check the device",
}


class NotARegularFile(OSError):
    """A FIFO, socket or device where a file was expected; the message names which."""


def describe_os_error(error: OSError, rerun: str = "run it again") -> str | None:
    """One line naming the path and what to do, for system errors a user can fix; else None.
    `rerun` says how to run again what failed (STAGE_RERUN for a stage)."""
    if isinstance(error, NotARegularFile):  # e.g. a FIFO given as a weights file
        return f"{os.fsdecode(error.filename)}: {error.strerror}; give a regular file"
    advice = _ADVICE.get(error.errno)
    if advice is None:
        return None
    where = " -> ".join(os.fsdecode(f) for f in (error.filename, error.filename2) if f is not None)
    return f"{where or 'a file'}: {advice.format(rerun=rerun)}"


@contextlib.contextmanager
def system_errors_as_user_errors(rerun: str = "run it again") -> Iterator[None]:
    """Turn the system errors `describe_os_error` explains into AdaptflowError (exit 2)."""
    try:
        yield
    except OSError as error:
        message = describe_os_error(error, rerun)
        if message is None:
            raise
        raise AdaptflowError(message) from error


def exit_on_user_error(main: Callable[[], None]) -> None:
    """Run a command; a user error becomes one `adaptflow error: ...` line and exit status 2.

    Commands use this; stage entry points use adaptflow.entry.stage, which also checks
    params.yaml and sweeps the temporaries of interrupted stages (which a command run beside
    a `dvc repro` must never do).
    """
    try:
        main()
    except AdaptflowError as error:
        print(f"{ERROR_PREFIX} {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX} interrupted", file=sys.stderr)
        sys.exit(130)
