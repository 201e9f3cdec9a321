"""Counters and fixed-bucket histograms that components keep of their own events (standard library only).

A component counts what happens to it (a batch encoded, an upload refused, a prompt found in the cache) here,
at the cost of an addition under a lock it already holds or a small one of its own; metrics/ turns the counts
into Prometheus families when scraped. Keeping the counts in the components means the metrics endpoint is one
reader among others (GetServerInfo reads the same), and a server without `--metrics-port` counts the same way.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass

# Shared bucket bounds: every latency (RPC duration, encoder queue wait) in seconds, every size (frames per batch).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative bucket counts (one per upper bound, then +Inf), the sum and the count of what was observed."""

    upper_bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # len(upper_bounds) + 1: the last is +Inf (== count)
    total: float
    count: int


class BucketHistogram:
    """Observations counted into fixed buckets (upper bounds inclusive, as Prometheus's `le`)."""

    def __init__(self, upper_bounds: Sequence[float]) -> None:
        self.upper_bounds = tuple(sorted(float(b) for b in upper_bounds))
        self._counts = [0] * (len(self.upper_bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.upper_bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for c in counts:
            running += c
            cumulative.append(running)
        return HistogramSnapshot(self.upper_bounds, tuple(cumulative), total, running)


class Tally:
    """Named counters that only go up (by label value: a refusal reason, a plugin name)."""

    def __init__(self) -> None:
        self._counts: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def get(self, key: str) -> float:
        with self._lock:
            return self._counts.get(key, 0)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._counts)
