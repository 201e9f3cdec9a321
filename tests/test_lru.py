"""The one in-memory LRU behind the search-text and prompt caches."""

from __future__ import annotations

import pytest

from echosearch.server.lru import LRUCache


def test_keeps_the_most_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # evicts "b", the least recent
    assert "b" not in cache and cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)
    cache.put("a", 10)
    assert cache.get("a") == 10 and len(cache) == 2
    with pytest.raises(ValueError):
        LRUCache(0)
