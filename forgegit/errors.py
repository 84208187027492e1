"""The one error type users see: a one-line message, never a traceback."""
from __future__ import annotations


class ForgegitError(Exception):
    """A problem the user can fix; the CLI prints its message and exits non-zero."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
