"""The one exception type that carries a user-facing message.

Anything the user can get wrong (a bad site name, a character outside the vocabulary, a missing
checkpoint) raises :class:`UserError`; the CLI prints its message on one line and exits non-zero.
Every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input, with a message that says how to fix it."""
