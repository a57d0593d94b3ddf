"""User-facing errors, and the one place that formats an error as one line.

A user mistake (bad flag, bad config value, missing files) raises :class:`UserError` with a
message saying what was wrong and what is valid; entry points print it with
:func:`print_error` (``error: <message>``, no traceback) and exit non-zero.
"""

from __future__ import annotations

import sys

LIMIT = 500  # characters; longer messages are cut with "..."


class UserError(Exception):
    """A mistake in the user's input or environment (bad flag, missing files, bad config).

    Entry points catch it and print only the message: no traceback for a user mistake.
    """


class DataError(UserError):
    """Dataset files missing, truncated or corrupt."""


def one_line(error: BaseException | object, limit: int = LIMIT) -> str:
    """An error (or any text) as one line of at most ``limit`` characters.

    - a :class:`UserError`: its message alone;
    - another exception: ``Type: message``; an exception that wraps its cause (Hydra's
      ``InstantiationException`` around e.g. torch's "Invalid learning rate") shows the cause;
    - text: whitespace collapsed; a recorded traceback keeps only its last line (the error).
    """
    if isinstance(error, BaseException):
        if type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
            error = error.__cause__
        text = " ".join(str(error).split())
        if not isinstance(error, UserError):
            text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        raw = "" if error is None else str(error).strip()
        if raw.startswith("Traceback"):
            raw = raw.splitlines()[-1]
        text = " ".join(raw.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def print_error(error: BaseException | str) -> None:
    """Print ``error: <one line>`` to stderr: how every entry point reports a user mistake."""
    print(f"error: {one_line(error)}", file=sys.stderr)
