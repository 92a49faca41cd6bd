"""A bounded cache of readings, so that a long-running page server keeps a fixed amount of memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")

READINGS_KEPT = 64
"""A reading of 2,000 samples is a few MB of Python objects; 64 of them stay well under a GB."""


class LeastRecentlyUsed(Generic[Value]):
    """At most ``max_entries`` values; the one used longest ago is dropped first."""

    def __init__(self, max_entries: int = READINGS_KEPT) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, Value] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def get_or_make(self, key: Hashable, make: Callable[[], Value]) -> Value:
        """The value for ``key``, made by ``make()`` (and kept) when it is not held."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = make()
        self._values[key] = value
        if len(self._values) > self.max_entries:
            self._values.popitem(last=False)
        return value
