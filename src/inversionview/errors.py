"""The one exception type that carries a user-facing message.

Anything the user can get wrong (a bad site name, a character outside the vocabulary, a missing
checkpoint) raises :class:`UserError`; the CLI prints its message on one line and exits non-zero.
Every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input, with a message that says how to fix it."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (its name when it has none), for a one-line UserError."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
