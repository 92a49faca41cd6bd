"""A bounded cache of readings, so that a long-running page server keeps a fixed amount of memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")

READINGS_KEPT = 64
"""A reading of 2,000 samples is a few MB of Python objects; 64 of them stay well under a GB."""


class LeastRecentlyUsed(Generic[Value]):
    """At most ``max_entries`` values; the one used longest ago is dropped first. Safe to share
    between threads (the page's sessions run in threads of one server)."""

    def __init__(self, max_entries: int = READINGS_KEPT) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def get_or_make(self, key: Hashable, make: Callable[[], Value]) -> Value:
        """The value for ``key``, made by ``make()`` (and kept) when it is not held. Two sessions
        asking for the same new key at once may both make it; the cache stays consistent."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()  # outside the lock: a reading takes seconds, other sessions go on meanwhile
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.max_entries:
                self._values.popitem(last=False)
        return value
