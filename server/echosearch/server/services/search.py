"""The search use cases: videos for a text (EchoCLIP's text tower), videos like a stored one, best frames, thumbnails."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from echosearch.server import cancellation
from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import AGGREGATIONS, SearchResult, VideoFilter
from echosearch.server.services.container import Services
from echosearch.server.services.videos import records_by_id
from echosearch.server.storage import search_plans
from echosearch.server.tasks.scoring_service import MAX_K

MAX_FRAMES_PER_VIDEO = 64  # best frames one result may carry


def search_by_text(
    services: Services,
    text: str,
    *,
    k: int = 10,
    aggregation: str = "max",
    flt: VideoFilter | None = None,
    frames_per_video: int = 1,
    with_thumbnails: bool = False,
    plan: list[str] | None = None,
) -> list[SearchResult]:
    """Top-k videos for a text: by best frame ("max") or by the EchoCLIP binary score ("mean").

    `with_thumbnails`: each result carries its best frame's JPEG (when the server keeps them).
    `plan`: given, it receives how the search backends answered (search --explain).
    """
    if not text or not text.strip():
        raise InvalidRequestError("search text is empty")
    model = services.model
    too_long = model.count_tokens(text) - model.context_length
    if too_long > 0:
        raise InvalidRequestError(
            f"search text is {too_long} tokens longer than the model's context of {model.context_length} tokens; shorten it"
        )
    _check_search_args(services, k, aggregation, frames_per_video, flt)
    query = embed_query(services, text)
    results = _search(
        services, query, k=k, aggregation=aggregation, flt=flt, frames_per_video=frames_per_video, plan=plan
    )
    return _with_thumbnails(services, results) if with_thumbnails else results


def search_by_video(
    services: Services,
    video_id: int,
    *,
    k: int = 10,
    aggregation: str = "mean",
    flt: VideoFilter | None = None,
    frames_per_video: int = 1,
    with_thumbnails: bool = False,
    plan: list[str] | None = None,
) -> list[SearchResult]:
    """Videos most like a stored one (its normalised mean frame as the query), itself excluded; `plan` as
    search_by_text's."""
    _check_search_args(services, k, aggregation, frames_per_video, flt)
    frames = services.reader.get_frames(int(video_id))
    query = frames.embeddings.mean(axis=0)
    query = (query / max(float(np.linalg.norm(query)), 1e-12)).astype(np.float32)
    results = _search(
        services,
        query,
        k=k,
        aggregation=aggregation,
        flt=flt,
        frames_per_video=frames_per_video,
        exclude=(int(video_id),),
        plan=plan,
    )
    return _with_thumbnails(services, results) if with_thumbnails else results


def embed_query(services: Services, text: str) -> np.ndarray:
    """A search text's embedding; recent ones are kept in memory (searches repeat)."""
    hit = services.query_cache.get(text)
    if hit is not None:
        return hit
    vector = services.encode_texts([text])[0]
    services.query_cache.put(text, vector)
    return vector


def _search(
    services: Services,
    query: np.ndarray,
    *,
    k: int,
    aggregation: str,
    flt: VideoFilter | None,
    frames_per_video: int,
    exclude: Sequence[int] = (),
    plan: list[str] | None = None,
) -> list[SearchResult]:
    cancellation.check()  # the query may have waited for the encoder: skip the search if nobody waits
    with search_plans.recording() as notes:
        hits = services.store.search_videos(
            query, k, aggregation=aggregation, flt=flt, frames_per_video=frames_per_video, exclude=exclude
        )
    if plan is not None:
        plan.extend(notes)
    records = records_by_id(services, [h.video_id for h in hits])
    # A video deleted between the search and the lookup is simply left out.
    return [SearchResult(records[h.video_id], float(h.score), h.best_frames) for h in hits if h.video_id in records]


def _with_thumbnails(services: Services, results: list[SearchResult]) -> list[SearchResult]:
    """The results with their best frame's JPEG attached (one catalog read for all of them)."""
    if not services.config.media.thumbnails or not results:
        return results
    best = [r.best_frames[0].frame_id for r in results if r.best_frames]
    jpegs = services.reader.thumbnails_for(best)
    return [
        dataclasses.replace(r, thumbnail=jpegs.get(r.best_frames[0].frame_id)) if r.best_frames else r for r in results
    ]


def _check_search_args(
    services: Services, k: int, aggregation: str, frames_per_video: int, flt: VideoFilter | None
) -> None:
    if not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"k must be between 1 and {MAX_K}, not {k}")
    if aggregation not in AGGREGATIONS:
        raise InvalidRequestError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
    if not 0 <= frames_per_video <= MAX_FRAMES_PER_VIDEO:
        raise InvalidRequestError(
            f"frames per video must be between 0 and {MAX_FRAMES_PER_VIDEO}, not {frames_per_video}"
        )
    services.check_filter(flt)
