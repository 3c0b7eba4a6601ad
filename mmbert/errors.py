"""Errors that the command line turns into a clear message and a non-zero exit status."""


class UsageError(Exception):
    """Unusable arguments or input (missing file, bad header, unknown language…): exit status 2, nothing written."""

    exit_code = 2
