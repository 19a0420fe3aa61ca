"""The one exception type for problems a user can fix (bad data, bad params, missing files)."""

ERROR_PREFIX = "adaptflow error:"  # how every entry point prints an AdaptflowError


class AdaptflowError(Exception):
    """A problem with the user's data, params or files; printed as one line, exit status 2."""


EXIT_USER_ERROR = 2  # bad data/params: rerunning will not help (flows do not retry it)
