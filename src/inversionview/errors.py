"""The one exception type that carries a user-facing message.

Anything the user can get wrong (a bad site name, a character outside the vocabulary, a missing
checkpoint) raises :class:`UserError`; the CLI prints its message on one line and exits non-zero.
Every other exception is a bug and keeps its traceback.

A message names a parameter of the library's function in backticks (`space_sample`); the CLI shows
it as the flag that sets it (--space-sample, or the flag whose destination the parameter is, as
`features_file` is --features), so one message serves Python and the command line.
"""

import re


class UserError(Exception):
    """A mistake in the user's input, with a message that says how to fix it."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (its name when it has none), for a one-line UserError."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def duration(seconds: float) -> str:
    """An estimate as a message gives it: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(message: str, flags: dict[str, str] | None = None) -> str:
    """``message`` with each `parameter` written as its command-line flag: ``flags[parameter]`` where
    the parser names one (a flag whose destination is that parameter), else --parameter."""
    flags = flags or {}

    def flag(match: re.Match) -> str:
        name = match.group(1)
        return flags.get(name) or "--" + name.replace("_", "-")

    return PARAMETER.sub(flag, message)
