"""The scoring use case: a task over a selection of stored videos, from stored embeddings only.

Kept apart from engine.py: it reads the catalog in batches and the video-mean index,
never the model except through the prompt cache, and streams its answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from echosearch.server.errors import InvalidRequestError, NotFoundError
from echosearch.server.records import VideoFilter
from echosearch.server.storage.reader import CatalogReader
from echosearch.server.storage.store import Store
from echosearch.server.tasks.prompt_cache import PromptEmbeddingCache
from echosearch.server.tasks.resident_scoring import resident_scorer
from echosearch.server.tasks.scoring_math import TaskScores, mean_prompt_embedding, score_task, task_scores
from echosearch.tasks.spec import Task, TaskKind

log = logging.getLogger(__name__)

MAX_K = 10_000  # the largest k of a search or a top-k score
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class VideoScore:
    """One video's result for a task."""

    video_id: int
    score: float
    value: float | None
    label: str | None
    decision: bool | None


class TaskScorer:
    """Scores tasks over stored frame embeddings, batch by batch."""

    def __init__(self, store: Store, prompts: PromptEmbeddingCache) -> None:
        self.store = store
        self.catalog: CatalogReader = store.reader
        self.prompts = prompts

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
    ) -> Iterator[list[VideoScore]]:
        """Score a task over a selection; `top_k` (binary tasks only) goes through the exact video-mean index."""
        if not 1 <= batch_size <= 100_000:
            raise InvalidRequestError(f"batch size must be between 1 and 100000, not {batch_size}")
        if top_k is not None:
            self._check_top_k(task, top_k)
        flt = self._with_ids(flt, video_ids)
        text_emb = self.task_embeddings(task)
        if top_k is not None:
            yield from self._score_top(task, text_emb, flt, top_k, batch_size)
            return
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
            found, offsets, frames = self.catalog.load_embeddings(batch)
            yield found, _score_batch(task, text_emb, found, offsets, frames)

    def _with_ids(self, flt: VideoFilter | None, video_ids: Sequence[int] | None) -> VideoFilter | None:
        if video_ids is None:
            return flt
        ids = tuple(int(v) for v in video_ids)
        if not ids:
            raise InvalidRequestError("the list of video ids is empty; leave it out to select every video")
        known = set(self.catalog.select_video_ids(VideoFilter(video_ids=ids)).tolist())
        missing = [v for v in ids if v not in known]
        if missing:
            shown = ", ".join(str(v) for v in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise NotFoundError(f"{len(missing)} video id(s) not stored: {shown}")
        return replace(flt or VideoFilter(), video_ids=ids)

    @staticmethod
    def _check_top_k(task: Task, top_k: int) -> None:
        if task.kind != TaskKind.BINARY:
            raise InvalidRequestError(
                f"top-k needs a binary task; {task.name!r} is {task.kind.value} — score a selection instead"
            )
        if task.aggregate is not None:
            raise InvalidRequestError(
                f"task {task.name!r} has its own aggregation, so top-k through the mean index is not exact"
            )
        if not 1 <= top_k <= MAX_K:
            raise InvalidRequestError(f"top k must be between 1 and {MAX_K}, not {top_k}")

    def _score_top(
        self, task: Task, text_emb: np.ndarray, flt: VideoFilter | None, top_k: int, batch_size: int
    ) -> Iterator[list[VideoScore]]:
        query = mean_prompt_embedding(task, text_emb)
        ranked = self.store.top_videos_by_mean(query, top_k, flt)
        ids = np.array([vid for vid, _ in ranked], dtype=np.int64)
        # Re-score the winners from their frames so the reply carries the numbers a full scan gives.
        for start in range(0, len(ids), batch_size):
            batch_ids, offsets, frames = self.catalog.load_embeddings(ids[start : start + batch_size])
            yield sorted(_score_batch(task, text_emb, batch_ids, offsets, frames), key=lambda s: -s.score)


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
