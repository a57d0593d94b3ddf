"""User-facing errors: a one-line message saying what was wrong and what is valid."""


class UserError(Exception):
    """A mistake in the user's input or environment (bad flag, missing files, bad config).

    Entry points catch it and print only the message: no traceback for a user mistake.
    """


class DataError(UserError):
    """Dataset files missing, truncated or corrupt."""
