"""Progress of long work on stderr: a bar with its time estimate, once the work has lasted a while."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PROGRESS_AFTER_SECONDS = 2.0
"""Work that lasts longer than this shows a bar with its estimate on a terminal, updated twice a second."""
LOGGED_PROGRESS_SECONDS = 10.0
"""When stderr is a file (a log), the bar's first line and each next one come this far apart."""


@contextmanager
def progress_bar(description: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback ``update(done, total)`` drawing a bar on stderr, once the work has taken a
    few seconds (``PROGRESS_AFTER_SECONDS``, or ``LOGGED_PROGRESS_SECONDS`` when stderr is no terminal)."""
    from tqdm import tqdm

    delay, interval = (PROGRESS_AFTER_SECONDS, 0.5) if sys.stderr.isatty() else (LOGGED_PROGRESS_SECONDS,) * 2
    options = {"mininterval": interval, "delay": delay, "leave": False, "file": sys.stderr}
    with tqdm(desc=description, unit=unit, **options) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield update
