"""Errors that speak to the user: what was wrong, where, and what to do."""


class VervalError(Exception):
    """Base of errors the CLI reports as a message with a non-zero exit code, no traceback."""

    exit_code = 2


class InputError(VervalError):
    """An input extract cannot be used as given (missing file, missing column, unreadable)."""


class UsageError(VervalError):
    """A command-line argument cannot be used as given."""


class ReconciliationError(VervalError):
    """The round's outcome counts do not add up to the input rows."""

    exit_code = 3


class StageError(VervalError):
    """A stage failed for a reason verval did not foresee; the message carries no data."""

    exit_code = 1
