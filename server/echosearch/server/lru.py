"""A small thread-safe LRU map: the one in-memory cache behind the search-text and prompt caches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Keeps the `max_items` most recently used entries; get and put are safe from any thread."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"an LRU cache needs room for at least one item, not {max_items}")
        self.max_items = int(max_items)
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value for `key` (now the most recent), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Store `value` as the most recent entry, evicting the least recent beyond `max_items`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Remove `key`; its value, or None when it was not cached."""
        with self._lock:
            return self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
