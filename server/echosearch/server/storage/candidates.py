"""Candidate planning: which videos (and so which frame-id ranges) a filtered search may return.

A filter is resolved in the catalog once per index seq: repeated cohort queries skip DuckDB until a
write (or a metadata change, which clears the cache) could change the answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from echosearch.server.records import VideoFilter
from echosearch.server.storage.frame_ids import FRAME_BITS

CANDIDATE_CACHE_ENTRIES = 32  # recent filters whose candidate lists are kept
CANDIDATE_CACHE_MAX_VIDEOS = 2_000_000  # videos held across all cached candidate lists (16 B each: 32 MB)

Candidates = tuple[np.ndarray, np.ndarray]  # (video ids sorted, their frame counts)


def frame_ranges(cand: Candidates) -> tuple[np.ndarray, np.ndarray]:
    """The half-open frame-id ranges (lo, hi) of the candidates' frames: one per video."""
    vids, counts = cand
    lo = vids << FRAME_BITS
    return lo, lo + counts


class CandidateCache:
    """filter (+ excluded ids) -> candidates, valid while the index seq they were read at is current."""

    def __init__(self, select_videos: Callable[[VideoFilter | None], Candidates]) -> None:
        self._select_videos = select_videos  # the catalog's (video ids, frame counts) for a filter
        self._cache: OrderedDict[tuple, tuple[int, Candidates]] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every cohort (metadata changed: filters may now match other videos)."""
        with self._lock:
            self._cache.clear()

    def get(self, flt: VideoFilter | None, exclude: Sequence[int], seq: int) -> Candidates | None:
        """(video ids, frame counts) allowed by `flt` and `exclude` at index seq `seq`; None when unrestricted."""
        if (flt is None or flt.is_empty()) and not exclude:
            return None
        key = (repr(flt), tuple(int(v) for v in exclude))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == seq:
                self._cache.move_to_end(key)
                return hit[1]
        vids, counts = self._select_videos(flt)
        if exclude:
            keep = ~np.isin(vids, np.asarray(list(exclude), dtype=np.int64))
            vids, counts = vids[keep], counts[keep]
        if len(vids) <= CANDIDATE_CACHE_MAX_VIDEOS:
            with self._lock:
                self._cache[key] = (seq, (vids, counts))
                # bounded twice: entries, and videos held in all of them (16 B each)
                while len(self._cache) > CANDIDATE_CACHE_ENTRIES or (
                    sum(len(v[1][0]) for v in self._cache.values()) > CANDIDATE_CACHE_MAX_VIDEOS
                ):
                    self._cache.popitem(last=False)
        return vids, counts
