"""The scoring use case: a task over a selection of stored videos, from stored embeddings only.

Called by services/tasks.py (which checks the request): it reads the catalog in batches and the
video-mean index, never the model except through the prompt cache, and streams its answer.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from echosearch.server.errors import NotFoundError
from echosearch.server.records import VideoFilter, VideoScore
from echosearch.server.storage.reader import CatalogReader
from echosearch.server.storage.store import Store
from echosearch.server.tasks.percentiles import ScoreDistributions, percentile_of, scored_by_mean_index
from echosearch.server.tasks.prompt_cache import PromptEmbeddingCache
from echosearch.server.tasks.resident_scoring import resident_scorer
from echosearch.server.tasks.scoring_math import TaskScores, mean_prompt_embedding, score_task, task_scores
from echosearch.tasks.spec import Task

log = logging.getLogger(__name__)

SCAN_SHARE = 0.25  # a selection of at least this share of the stored videos is scored from one catalog scan

MAX_K = 10_000  # the largest k of a search or a top-k score
MAX_SCORE_BATCH = 100_000  # the most videos in one streamed batch of scores
PROGRESS_EVERY_S = 5.0


class TaskScorer:
    """Scores tasks over stored frame embeddings, batch by batch."""

    def __init__(self, store: Store, prompts: PromptEmbeddingCache) -> None:
        self.store = store
        self.catalog: CatalogReader = store.reader
        self.prompts = prompts
        self.distributions = ScoreDistributions(store)

    def task_embeddings(self, task: Task) -> np.ndarray:
        """The task's candidate-text embeddings, from the prompt cache (each text encoded once per model)."""
        # A request's own task is cached in memory only: requests must not grow the catalog without bound.
        return self.prompts.embed(task.candidate_texts(), persist=task.source != "request")

    def score_videos(
        self,
        task: Task,
        *,
        flt: VideoFilter | None = None,
        video_ids: Sequence[int] | None = None,
        top_k: int | None = None,
        batch_size: int = 1024,
        bottom_k: int | None = None,
    ) -> Iterator[list[VideoScore]]:
        """Score a task over a selection, or only its `top_k` highest / `bottom_k` lowest videos (exact).

        Binary tasks rank by score through the video-mean index; regression and categorical tasks (and
        tasks with their own aggregation) by value, ties by score: every selected video is scored, then
        partially sorted.
        """
        # services/tasks.py checked the request (`check_score_args`); here they are only asserted
        assert 1 <= batch_size <= MAX_SCORE_BATCH and (top_k is None or bottom_k is None), (batch_size, top_k, bottom_k)
        k, lowest = (bottom_k, True) if bottom_k is not None else (top_k, False)
        assert k is None or 1 <= k <= MAX_K, k
        selection = flt
        flt = self._with_ids(flt, video_ids)
        text_emb = self.task_embeddings(task)
        batches = self._scored(task, text_emb, flt, k, lowest, batch_size)
        if not scored_by_mean_index(task):
            yield from batches
            return
        # the percentile is among the videos of the request's filter (without its id list: a video page
        # asks for one video, and wants its place among all)
        dist = self.distributions.scores(task, mean_prompt_embedding(task, text_emb), selection)
        for batch in batches:
            yield [replace(s, percentile=percentile_of(dist, s.score), percentile_of=len(dist)) for s in batch]

    def _scored(
        self, task: Task, text_emb: np.ndarray, flt: VideoFilter | None, k: int | None, lowest: bool, batch_size: int
    ) -> Iterator[list[VideoScore]]:
        if k is not None and scored_by_mean_index(task):
            yield from self._score_top(task, text_emb, flt, k, batch_size, lowest=lowest)
            return
        if k is not None:
            ranked = self._rank_exact(task, text_emb, flt, k, lowest, batch_size)
            for start in range(0, len(ranked), batch_size):
                yield ranked[start : start + batch_size]
            return
        yield from self._score_all(task, text_emb, flt, batch_size)

    def _score_all(
        self, task: Task, text_emb: np.ndarray, flt: VideoFilter | None, batch_size: int
    ) -> Iterator[list[VideoScore]]:
        ids = self.catalog.select_video_ids(flt)
        total, done, last_log = len(ids), 0, time.monotonic()
        for batch_ids, scores in self._batches(task, text_emb, ids, batch_size):
            yield scores
            done += len(batch_ids)
            if time.monotonic() - last_log > PROGRESS_EVERY_S:
                log.info("scoring %s: %d / %d videos", task.name, done, total)
                last_log = time.monotonic()

    def _batches(
        self, task: Task, text_emb: np.ndarray, ids: np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, list[VideoScore]]]:
        """Score `ids` batch by batch: on the store's resident matrix when it has one, else from the catalog."""
        device_score = resident_scorer(task, text_emb)
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            score = None if device_score is None else self.store.score_resident(batch, device_score)
            if score is not None:
                yield batch, _video_scores(task, batch, task_scores(task, score))
                continue
            if start == 0 and len(ids) > batch_size and len(ids) >= SCAN_SHARE * self.catalog.count_videos():
                yield from self._scanned(task, text_emb, ids, batch_size)  # no resident matrix: read in one pass
                return
            found, offsets, frames = self.catalog.load_embeddings(batch)
            yield found, _score_batch(task, text_emb, found, offsets, frames)

    def _scanned(
        self, task: Task, text_emb: np.ndarray, ids: np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, list[VideoScore]]]:
        """Score `ids` (sorted) from one sequential scan of the catalog's frames, in replies of `batch_size`.

        Reading by batches of ids joins each batch against the frames table; when most of the store is asked
        for, one scan reads the same rows ~4x faster (the EF run over every video of bench/archive.py)."""
        pending: list[VideoScore] = []
        for vids, offsets, emb in self.catalog.scan_video_embeddings():
            at = np.minimum(np.searchsorted(ids, vids), len(ids) - 1)
            keep = ids[at] == vids  # the selection (videos written since it was made are not in it)
            if not keep.all():
                counts = np.diff(offsets)
                emb, vids = emb[np.repeat(keep, counts)], vids[keep]
                offsets = np.r_[0, np.cumsum(counts[keep])]
            if len(vids):
                pending.extend(_score_batch(task, text_emb, vids, offsets, emb))
            full = len(pending) - len(pending) % batch_size  # whole replies; the rest waits for the next batch
            for start in range(0, full, batch_size):
                reply = pending[start : start + batch_size]
                yield np.array([s.video_id for s in reply], np.int64), reply
            del pending[:full]  # once per scan batch: re-slicing per reply was quadratic at small batch sizes
        if pending:
            yield np.array([s.video_id for s in pending], np.int64), pending

    def _with_ids(self, flt: VideoFilter | None, video_ids: Sequence[int] | None) -> VideoFilter | None:
        if video_ids is None:
            return flt
        ids = tuple(int(v) for v in video_ids)
        assert ids, "an empty selection is refused by services/tasks.py"
        known = set(self.catalog.select_video_ids(VideoFilter(video_ids=ids)).tolist())
        missing = [v for v in ids if v not in known]
        if missing:
            shown = ", ".join(str(v) for v in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise NotFoundError(f"{len(missing)} video id(s) not stored: {shown}")
        return replace(flt or VideoFilter(), video_ids=ids)

    def _rank_exact(
        self, task: Task, text_emb: np.ndarray, flt: VideoFilter | None, k: int, lowest: bool, batch_size: int
    ) -> list[VideoScore]:
        """Score every selected video, keeping the k highest (lowest) by value then score; NaN ranks last."""
        kept: list[VideoScore] = []
        pick = heapq.nsmallest if lowest else heapq.nlargest
        key = _rank_key(lowest)
        for batch in self._score_all(task, text_emb, flt, batch_size):
            kept = pick(k, kept + batch, key=key)
        return kept

    def _score_top(
        self,
        task: Task,
        text_emb: np.ndarray,
        flt: VideoFilter | None,
        top_k: int,
        batch_size: int,
        *,
        lowest: bool = False,
    ) -> Iterator[list[VideoScore]]:
        query = mean_prompt_embedding(task, text_emb)
        # The lowest mean cosines are the highest of the negated query: the same exact index search.
        ranked = self.store.top_videos_by_mean(-query if lowest else query, top_k, flt)
        ids = np.array([vid for vid, _ in ranked], dtype=np.int64)
        # Re-score the winners from their frames so the reply carries the numbers a full scan gives.
        for start in range(0, len(ids), batch_size):
            batch_ids, offsets, frames = self.catalog.load_embeddings(ids[start : start + batch_size])
            scored = _score_batch(task, text_emb, batch_ids, offsets, frames)
            yield sorted(scored, key=lambda s: s.score if lowest else -s.score)


def _rank_key(lowest: bool) -> Callable[[VideoScore], tuple[float, float, int]]:
    """Order by value (regression, categorical) or score (binary), then score, then id; NaN last either way."""
    worst = math.inf if lowest else -math.inf

    def finite(x: float | None) -> float:
        return worst if x is None or math.isnan(x) else x

    sign = 1 if lowest else -1  # ties: the smaller id first in both directions
    return lambda s: (finite(s.value if s.value is not None else s.score), finite(s.score), sign * s.video_id)


def _score_batch(
    task: Task, text_emb: np.ndarray, ids: np.ndarray, offsets: np.ndarray, frames: np.ndarray
) -> list[VideoScore]:
    return _video_scores(task, ids, score_task(task, frames, offsets, text_emb))


def _video_scores(task: Task, ids: np.ndarray, result: TaskScores) -> list[VideoScore]:
    return [
        VideoScore(
            video_id=int(video_id),
            score=float(result.score[i]),
            value=None if result.value is None else float(result.value[i]),
            label=None if result.label is None else result.label[i],
            decision=None if result.decision is None else bool(result.decision[i]),
        )
        for i, video_id in enumerate(ids.tolist())
    ]
