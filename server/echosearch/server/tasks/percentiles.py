"""Where a video's binary score stands among the stored videos: the percentile shown beside the raw cosine.

A binary task's score (the mean frame-prompt cosine) is a small number a person cannot read alone; its rank
among the videos of the same selection can be. The sorted scores of a selection are one product against the
video-mean index (mean of cosines = cosine with the mean frame, for the default aggregation), cached per task,
filter and catalog state, so a video page asking for one video's percentile of 31 tasks stays fast.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from echosearch.server.records import VideoFilter
from echosearch.server.storage.store import Store
from echosearch.tasks.spec import Task, TaskKind

CACHED_DISTRIBUTIONS = 128


def scored_by_mean_index(task: Task) -> bool:
    """Binary tasks with the default aggregation: their scores are the video-mean index's products, so their
    top-k comes from that index and their percentile from its distribution."""
    return task.kind == TaskKind.BINARY and task.aggregate is None


class ScoreDistributions:
    """Sorted scores of every video in a selection, per (task, filter, catalog seq); thread-safe."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def scores(self, task: Task, query: np.ndarray, flt: VideoFilter | None) -> np.ndarray:
        """The selection's scores, ascending (`query`: the task's mean prompt embedding)."""
        key = (task.name, task.prompts, repr(flt), self.store.reader.last_seq())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        n = self.store.reader.count_videos(flt)
        ranked = self.store.top_videos_by_mean(query, n, flt) if n else []
        found = np.sort(np.fromiter((s for _, s in ranked), dtype=np.float64, count=len(ranked)))
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > CACHED_DISTRIBUTIONS:
                self._cache.popitem(last=False)
        return found


def percentile_of(scores: np.ndarray, score: float) -> float | None:
    """The share (0-100) of `scores` (ascending) at most `score`; None for a NaN score or no scores."""
    if not len(scores) or np.isnan(score):
        return None
    # the video's own score comes from its frames, the distribution's from its mean: allow float noise
    return float(100.0 * np.searchsorted(scores, score + 1e-6, side="right") / len(scores))
