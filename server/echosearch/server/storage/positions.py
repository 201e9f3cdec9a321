"""Row bookkeeping shared by the flat indexes: row -> id, tombstones, id ranges -> rows, measured costs.

Both flat backends (FAISS `IndexFlatIP` on CPU, the torch matrix) store vectors in insertion order.
Ids normally arrive in increasing order (video ids grow, a video's frame ids are consecutive), so
id -> row is a binary search; otherwise a sorted permutation is built once per change.
"""

from __future__ import annotations

import numpy as np


class MatrixFull(MemoryError):
    """A resident matrix would outgrow its memory cap, or its device ran out of memory."""


def ranges_to_rows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate the half-open integer ranges [starts[i], ends[i]) into one int64 array."""
    starts = np.asarray(starts, np.int64).reshape(-1)
    lengths = np.maximum(np.asarray(ends, np.int64).reshape(-1) - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    # each element = its range's start + its position within that range, without a Python loop
    shift = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return shift + np.arange(total, dtype=np.int64)


class RowMap:
    """Row -> id for an append-only store with tombstones (host memory, numpy)."""

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self._ids = np.empty(1024, np.int64)
        self._alive = np.zeros(1024, bool)
        self.n = 0
        self.dead = 0
        self.sorted = True
        self._order: np.ndarray | None = None
        if ids is not None:
            self.append(ids)

    @property
    def ids(self) -> np.ndarray:
        """Ids of every row, dead included (a view)."""
        return self._ids[: self.n]

    @property
    def alive(self) -> np.ndarray:
        """Live-row mask (a view)."""
        return self._alive[: self.n]

    def append(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64).reshape(-1)
        need = self.n + len(ids)
        if need > len(self._ids):
            cap = max(need, int(len(self._ids) * 1.5))
            self._ids = np.resize(self._ids, cap)
            alive = np.zeros(cap, bool)
            alive[: self.n] = self._alive[: self.n]
            self._alive = alive
        if self.sorted and len(ids) and (np.any(np.diff(ids) <= 0) or (self.n and ids[0] <= self._ids[self.n - 1])):
            self.sorted = False
        self._ids[self.n : need] = ids
        self._alive[self.n : need] = True
        self.n = need
        self._order = None

    def rows_in_ranges(self, lo: np.ndarray, hi: np.ndarray, *, live_only: bool = True) -> np.ndarray:
        """Rows whose ids fall in any half-open range [lo[i], hi[i]), range by range."""
        lo, hi = np.asarray(lo, np.int64).reshape(-1), np.asarray(hi, np.int64).reshape(-1)
        ids = self.ids
        if self.sorted:
            rows = ranges_to_rows(np.searchsorted(ids, lo), np.searchsorted(ids, hi))
        else:
            if self._order is None:
                self._order = np.argsort(ids, kind="stable")
            srt = ids[self._order]
            rows = self._order[ranges_to_rows(np.searchsorted(srt, lo), np.searchsorted(srt, hi))]
        if live_only and self.dead and len(rows):
            rows = rows[self._alive[rows]]
        return rows

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Live rows holding `ids` (absent ids are skipped)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        return self.rows_in_ranges(ids, ids + 1)

    def kill(self, rows: np.ndarray) -> int:
        """Tombstone live `rows`; returns how many."""
        rows = np.unique(rows)
        rows = rows[self._alive[rows]]
        self._alive[rows] = False
        self.dead += len(rows)
        return len(rows)

    def dead_ids(self) -> np.ndarray:
        return self.ids[~self.alive]

    def compacted(self) -> RowMap:
        """A new map holding only the live rows, in order."""
        return RowMap(self.ids[self.alive])


class CostModel:
    """Measured seconds per row of each search strategy; priors only set the starting ratio.

    Every EXPLORE_EVERY-th choice re-measures the runner-up when its expected time is within
    EXPLORE_WITHIN of the best, so one unlucky timing cannot lock a strategy out for good.
    """

    EXPLORE_EVERY = 16
    EXPLORE_WITHIN = 4.0
    SAMPLES = 9

    def __init__(self, priors: dict[str, float]) -> None:
        self.per_row = dict(priors)
        self._measured: set[str] = set()
        self._samples: dict[str, list[float]] = {}
        self._calls = 0

    def cheapest(self, rows: dict[str, int]) -> str:
        """The strategy with the least expected time for its row count (now and then the runner-up)."""
        expected = sorted((rows[name] * self.per_row[name], name) for name in rows)
        self._calls += 1
        if len(expected) > 1 and self._calls % self.EXPLORE_EVERY == 0:
            (best, _), (second, name) = expected[0], expected[1]
            if second <= self.EXPLORE_WITHIN * best:
                return name
        return expected[0][1]

    def learn(self, name: str, seconds: float, rows: int) -> None:
        """Record one timed call; the estimate is the median of the last SAMPLES (robust to a stall)."""
        if rows < 1024:
            return  # too small to time meaningfully
        per_row = seconds / rows
        if not self._measured:  # the first measurement scales every prior
            ratio = per_row / self.per_row[name]
            self.per_row = {k: v * ratio for k, v in self.per_row.items()}
        samples = self._samples.setdefault(name, [])
        samples.append(per_row)
        del samples[: -self.SAMPLES]
        self.per_row[name] = float(np.median(samples))
        self._measured.add(name)
