"""Command lines for tests, written once: ``cli_args("invert", probed=d, position=-2, json=True)``."""

from __future__ import annotations


def cli_args(command: str, *positional, **options) -> list[str]:
    """``command``, its positional arguments, then ``--kebab-case VALUE`` per option (``True``: the
    flag alone; ``None`` and ``False``: left out; a list: the option repeated)."""
    args = [command, *map(str, positional)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                args += [flag, str(item)]
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args
