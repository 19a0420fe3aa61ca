"""System errors a user can fix become one line naming the path; the others stay tracebacks."""

from __future__ import annotations

import errno

import pytest

from adaptflow.core.errors import AdaptflowError, system_errors_as_user_errors


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, "models/adapted.pt: no space left on the device; free some space"),
        (errno.EROFS, "models/adapted.pt: the file system is read-only; make it writable"),
        (errno.EACCES, "models/adapted.pt: permission denied; give the user"),
        (errno.ELOOP, "models/adapted.pt: a symlink loop"),
    ],
)
def test_a_system_error_the_user_can_fix_is_one_line_naming_the_path(code, expected):
    with pytest.raises(AdaptflowError) as raised, system_errors_as_user_errors():
        raise OSError(code, "system words", "models/adapted.pt")
    assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)


def test_a_system_error_no_user_can_fix_stays_a_traceback():
    with pytest.raises(ConnectionResetError), system_errors_as_user_errors():
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
