"""The one base of every error a user may see.  Pure: no I/O.

A :class:`KnownError` is not a bug: something was refused or is out of
reach (bad input, a store down, a claim held by someone else), and
:attr:`~KnownError.message_fr` says so in French, as the operator reads it.
The UI's operation runner shows that text and keeps the previous state;
any other exception is a bug and goes to the crash dialog and the log.
"""

from __future__ import annotations

__all__ = ["KnownError"]


class KnownError(Exception):
    """A refused or failed operation the user is told about, in French.

    ``message_fr`` is shown as is: it never holds a traceback, a token, nor
    anything the operator did not type or see."""

    message_fr: str

    def __init__(self, message_fr: str, *args: object) -> None:
        super().__init__(message_fr, *args)
        self.message_fr = message_fr
